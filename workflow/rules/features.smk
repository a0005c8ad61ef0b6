rule demo_wavlm:
    """A small WavLM with random weights, saved with save_pretrained and marked UNTRAINED."""
    output:
        directory(f"{R}/models/wavlm-untrained-demo"),
    params:
        seed=FEATURES["demo_seed"],
    log:
        f"{R}/logs/demo_wavlm.log",
    benchmark:
        f"{R}/benchmarks/demo_wavlm.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg demo-wavlm --out {output} --seed {params.seed} > {log} 2>&1"


rule extract_features:
    """Cache WavLM hidden states (float16) of every file of a split into one HDF5 file."""
    input:
        manifest=labels("{corpus}", "{split}", "manifest.tsv"),
        model=[wavlm_model()] if UNTRAINED_DEMO_MODEL else [],
    output:
        features("{corpus}", "{split}"),
    params:
        model=lambda wildcards, input: input.model[0] if UNTRAINED_DEMO_MODEL else FEATURES["model"],
        settings=as_json(feature_settings()),
    threads: 2
    log:
        f"{R}/logs/extract_features/{{corpus}}/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/extract_features/{{corpus}}/{{split}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} extract-features --manifest {input.manifest} --model {params.model:q} "
        "--out {output} --settings {params.settings:q} > {log} 2>&1"
