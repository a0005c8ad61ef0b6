# Stage `segmenter`: the self-contained model folders that `proxyseg segment` applies
# (proxyseg.segmenter).


rule export_model:
    """A self-contained model folder (proxy, dictionary, teacher fusion, WavLM, settings) for `proxyseg segment`."""
    input:
        proxy=f"{R}/proxies/{{proxy}}/model.pt",
        teacher=f"{R}/teacher/model.pt",
        dictionary=lambda wildcards: dictionary_path(wildcards.proxy),
        features=first_features(),
        spectrograms=spectrograms(TRAINING_CORPORA[0], "train"),
        model=wavlm_inputs(),
    output:
        directory(f"{R}/export/{{proxy}}"),
    params:
        wavlm=lambda wildcards, input: input.model[0] if DEMO_MODEL else FEATURES["model"],
        settings=as_json({"copy_wavlm": EXPORT["copy_wavlm"]}),
        inference=as_json(INFERENCE),
        threshold=SCORING["threshold"],
        tau=config["explain"]["tau"],
    resources:
        mem_mb=retry_mem(4000),
        runtime=30,
        gpu=0,
    log:
        f"{R}/logs/export/{{proxy}}.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg export --proxy {input.proxy} --teacher {input.teacher} --dictionary {input.dictionary} "
        "--features {input.features} --spectrograms {input.spectrograms} --wavlm {params.wavlm:q} "
        "--name {wildcards.proxy} --out {output} --settings {params.settings:q} --inference {params.inference:q} "
        "--threshold {params.threshold} --tau {params.tau} > {log} 2>&1"
