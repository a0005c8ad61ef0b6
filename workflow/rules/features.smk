rule demo_wavlm:
    """The demo's small WavLM, saved with save_pretrained: pre-trained without labels on the training audio
    (features.model: demo) or left with random weights (untrained-demo, or demo_pretrain.steps 0)."""
    input:
        audio=demo_pretrain_audio(),
    output:
        directory(f"{R}/models/wavlm-{{name}}"),
    params:
        seed=FEATURES["demo_seed"],
        settings=as_json({"pretrain": demo_pretrain_settings(), "wavlm": FEATURES["demo_wavlm"],
                          "device": FEATURES["device"]}),
    wildcard_constraints:
        name="demo|untrained-demo",
    threads: 2
    log:
        f"{R}/logs/demo_wavlm/{{name}}.log",
    benchmark:
        f"{R}/benchmarks/demo_wavlm/{{name}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} demo-wavlm --out {output} --seed {params.seed} --audio {input.audio} "
        "--settings {params.settings:q} > {log} 2>&1"


rule extract_features:
    """Cache WavLM hidden states (float16) of every file of a split into one HDF5 file."""
    input:
        manifest=labels("{corpus}", "{split}", "manifest.tsv"),
        model=[wavlm_model()] if DEMO_MODEL else [],
    output:
        features("{corpus}", "{split}"),
    params:
        model=lambda wildcards, input: input.model[0] if DEMO_MODEL else FEATURES["model"],
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
