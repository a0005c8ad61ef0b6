# Stage `corpora`: the demo and mixed corpora, label harmonisation, class hours (proxyseg.corpora).


rule demo_corpus:
    """Synthesise one embedded demo corpus (deterministic from demo.seed): the whole corpus folder (audio,
    annotations, lists, the test split's class stems, README.md, provenance.json)."""
    input:
        real=[DEMO["real_sources"]] if DEMO["real_sources"] else [],
    output:
        directory(demo_folder("{kind}")),
    params:
        settings=lambda wildcards: as_json(DEMO[wildcards.kind]),
        seed=DEMO["seed"],
        real=f"--real-sources {shlex.quote(DEMO['real_sources'])}" if DEMO["real_sources"] else "",
    threads: 1
    resources:
        **LIGHT,
    log:
        f"{R}/logs/demo_corpus/{{kind}}.log",
    benchmark:
        f"{R}/benchmarks/demo_corpus/{{kind}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg demo-corpus --kind {wildcards.kind} --out {output} --seed {params.seed} "
        "--settings {params.settings:q} {params.real} > {log} 2>&1"


rule harmonise:
    """Map a corpus split to the four classes: reference RTTM, UEM, manifest and frame targets."""
    input:
        annotations=annotation_inputs,
        audio=lambda wildcards: audio_inputs(wildcards.corpus, wildcards.split),  # durations, checked
    output:
        reference=labels("{corpus}", "{split}", "reference.rttm"),
        uem=labels("{corpus}", "{split}", "uem.uem"),
        files=labels("{corpus}", "{split}", "files.lst"),
        manifest=labels("{corpus}", "{split}", "manifest.tsv"),
        annotated=labels("{corpus}", "{split}", "annotated.json"),
        targets=labels("{corpus}", "{split}", "targets.h5"),
        hours=labels("{corpus}", "{split}", "class_hours.tsv"),
    params:
        settings=lambda wildcards: as_json(corpus_settings(wildcards.corpus, wildcards.split)),
        out_dir=lambda wildcards, output: os.path.dirname(output.targets),
    threads: 1
    resources:
        mem_mb=retry_mem(4000),
        runtime=60,
        gpu=0,
    log:
        f"{R}/logs/harmonise/{{corpus}}/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/harmonise/{{corpus}}/{{split}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg harmonise --corpus {wildcards.corpus} --split {wildcards.split} "
        "--out-dir {params.out_dir} --settings {params.settings:q} > {log} 2>&1"


rule class_hours:
    """Annotated hours per class, corpus and split."""
    input:
        [labels(c, s, "class_hours.tsv") for c, s in corpus_split_pairs()],
    output:
        tsv=report(f"{R}/tables/class_hours.tsv", caption="../report/class_hours.rst", category="Tables"),
        md=f"{R}/tables/class_hours.md",
    threads: 1
    resources:
        **LIGHT,
    log:
        f"{R}/logs/class_hours.log",
    benchmark:
        f"{R}/benchmarks/class_hours.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg class-hours {input} --out-tsv {output.tsv} --out-md {output.md} > {log} 2>&1"


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


rule fetch_debian:
    """Real recordings of a Debian package (config debian_packages), with SOURCE.json: version, sha256,
    licences. Never committed; refetched only when the folder is gone."""
    output:
        directory(f"{R}/corpora/debian/{{package}}"),
    resources:
        **LIGHT,
    log:
        f"{R}/logs/fetch_debian/{{package}}.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg fetch-debian --package {wildcards.package} --out {output} > {log} 2>&1"
