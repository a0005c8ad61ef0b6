rule mix_corpus:
    """A mixing corpus from folders of speech, music and noise recordings (exact labels, seeded)."""
    input:
        sources=lambda wildcards: MIXES[wildcards.mix]["sources"],
    output:
        directory(f"{R}/corpora/{{mix}}"),
    params:
        seed=lambda wildcards: MIXES[wildcards.mix]["seed"],
        settings=lambda wildcards: as_json(
            {k: v for k, v in MIXES[wildcards.mix].items() if k not in ("sources", "seed")}
        ),
    resources:
        mem_mb=retry_mem(8000),
        runtime=120,
        gpu=0,
    log:
        f"{R}/logs/mix_corpus/{{mix}}.log",
    benchmark:
        f"{R}/benchmarks/mix_corpus/{{mix}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg mix-corpus --sources {input.sources:q} --out {output} --seed {params.seed} "
        "--settings {params.settings:q} > {log} 2>&1"
