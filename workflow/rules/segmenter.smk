# Stage `segmenter`: the self-contained model folders that `proxyseg segment` applies
# (proxyseg.segmenter).


rule export_model:
    """A self-contained model folder (proxy, dictionary, teacher fusion and WavLM or the black box, settings)
    for `proxyseg segment`."""
    input:
        proxy=f"{R}/proxies/{{proxy}}/model.pt",
        dictionary=lambda wildcards: dictionary_path(wildcards.proxy),
        spectrograms=spectrograms(TRAINING_CORPORA[0], "train"),
        teacher=judge_inputs(),  # the teacher, its feature cache and WavLM; or the black box's checkpoint
    output:
        directory(f"{R}/export/{{proxy}}"),
    params:
        teacher=export_options(),
        settings=as_json({"copy_wavlm": EXPORT["copy_wavlm"]}),
        inference=as_json(INFERENCE),
        threshold=SCORING["threshold"],
        tau=config["explain"]["tau"],
        relevance=config["explain"]["relevance"],
    resources:
        mem_mb=retry_mem(4000),
        runtime=30,
        gpu=0,
    log:
        f"{R}/logs/export/{{proxy}}.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg export --proxy {input.proxy} --dictionary {input.dictionary} "
        "--spectrograms {input.spectrograms} {params.teacher} "
        "--name {wildcards.proxy} --out {output} --settings {params.settings:q} --inference {params.inference:q} "
        "--threshold {params.threshold} --tau {params.tau} --relevance {params.relevance} > {log} 2>&1"
