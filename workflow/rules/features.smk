# WavLM feature caching, sharded: the files of a corpus split are cut into N shards (`features.shards`,
# or `--set-scatter features=N` on the command line), one extraction job and one HDF5 file per shard,
# gathered into `features/<corpus>/<split>.h5`, an index of virtual datasets that every reader uses as
# one file. The values do not depend on N (tests/features/test_shards.py).


scattergather:
    features=FEATURES["shards"],


rule demo_wavlm:
    """The demo's small WavLM, saved with save_pretrained: pre-trained without labels on the training audio
    (features.model: demo) or left with random weights (untrained-demo, or demo_pretrain.steps 0)."""
    input:
        audio=demo_pretrain_audio(),
        recordings=split_audio((c, "train") for c in TRAINING_CORPORA) if demo_pretrain_audio() else [],
    output:
        directory(f"{R}/models/wavlm-{{name}}"),
    params:
        seed=FEATURES["demo_seed"],
        settings=as_json({"pretrain": plan.demo_pretrain(FEATURES), "wavlm": FEATURES["demo_wavlm"]}),
        runtime=runtime_param(),
    wildcard_constraints:
        name="demo|untrained-demo",
    priority: CRITICAL_PATH + 1  # everything waits for it: ahead of the NMF and other side jobs when both cores are free
    threads: 2
    resources:
        mem_mb=retry_mem(4000),
        runtime=60,
        gpu=0,
    log:
        f"{R}/logs/demo_wavlm/{{name}}.log",
    benchmark:
        f"{R}/benchmarks/demo_wavlm/{{name}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} demo-wavlm --out {output} --seed {params.seed} --audio {input.audio} "
        "--settings {params.settings:q} --runtime {params.runtime:q} > {log} 2>&1"


rule extract_features:
    """Cache WavLM hidden states (float16) of one shard of a split's files into one HDF5 file.

    On a GPU: float16 autocast (features.half), chunks of equal length batched across files; an
    out-of-memory batch is split in two, and a retried job (--retries) starts with half the batch.
    """
    input:
        manifest=labels("{corpus}", "{split}", "manifest.tsv"),
        recordings=lambda wildcards: audio_inputs(wildcards.corpus, wildcards.split),
        model=wavlm_inputs(),
    output:
        f"{R}/features/{{corpus}}/{{split}}/shard{{scatteritem}}.h5",
    params:
        model=lambda wildcards, input: input.model[0] if DEMO_MODEL else FEATURES["model"],
        settings=as_json(feature_settings()),
        runtime=runtime_param(),
    wildcard_constraints:
        scatteritem=r"\d+-of-\d+",
    priority: longest_first
    threads: SIDE_THREADS
    resources:
        mem_mb=retry_mem(16000),
        runtime=480,
        gpu=1,
        batch_size=retry_halved(config["runtime"]["feature_batch_size"]),
    log:
        f"{R}/logs/extract_features/{{corpus}}/{{split}}/shard{{scatteritem}}.log",
    benchmark:
        f"{R}/benchmarks/extract_features/{{corpus}}/{{split}}/shard{{scatteritem}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} extract-features --manifest {input.manifest} --model {params.model:q} "
        "--shard {wildcards.scatteritem} --batch-size {resources.batch_size} "
        "--out {output} --settings {params.settings:q} --runtime {params.runtime:q} > {log} 2>&1"


rule gather_features:
    """One index HDF5 per split: a virtual dataset per file, pointing into its shard."""
    input:
        lambda wildcards: gather.features(f"{R}/features/{wildcards.corpus}/{wildcards.split}/shard{{scatteritem}}.h5"),
    output:
        features("{corpus}", "{split}"),
    priority: CRITICAL_PATH
    threads: 1
    resources:
        **LIGHT,
    log:
        f"{R}/logs/gather_features/{{corpus}}/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/gather_features/{{corpus}}/{{split}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg gather-features {input} --out {output} > {log} 2>&1"
