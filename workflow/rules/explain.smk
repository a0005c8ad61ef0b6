# Stage `explain`: prototypes and local explanations, faithfulness judged by the explained model, agreement
# with the teacher's gradient saliency, ground truth (proxyseg.explain).


rule explain:
    """Local explanations of scored-split segments and global class prototypes of one proxy."""
    input:
        model=f"{R}/proxies/{{proxy}}/model.pt",
        prototype_triples=lambda wildcards: explain_items(wildcards.proxy, config["explain"]["splits"]),
        local_triples=lambda wildcards: explain_items(wildcards.proxy, [SCORING["split"]]),
        # the audio of the local explanations: from the manifest.tsv beside each local targets.h5
        manifests=[labels(c, SCORING["split"], "manifest.tsv") for c in SCORED],
        recordings=scored_audio(),
    output:
        prototypes=f"{R}/explanations/{{proxy}}/prototypes.npz",
        figure=report(
            f"{R}/explanations/{{proxy}}/prototypes.png",
            caption="../report/prototypes.rst",
            category="Explanations",
            labels={"figure": "class prototypes", "proxy": "{proxy}"},
        ),
        bands=f"{R}/explanations/{{proxy}}/band_mass.tsv",
        summary=f"{R}/explanations/{{proxy}}/explain.json",
        local=directory(f"{R}/explanations/{{proxy}}/local"),  # <class>_<n>.png, .wav, _residual.wav
    params:
        # the figures and prototypes read the paper's relevance (explain.relevance is the faithfulness test's)
        settings=as_json({k: v for k, v in config["explain"].items() if k not in ("splits", "relevance")}),
        seed=config["seed"],
        out_dir=lambda wildcards, output: os.path.dirname(output.prototypes),
    threads: 1
    resources:
        mem_mb=retry_mem(16000),
        runtime=120,
        gpu=0,
    log:
        f"{R}/logs/explain/{{proxy}}.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:  # local/ is made first: it exists even when no segment is explained (local_per_class: 0)
        "mkdir -p {output.local} && "
        "proxyseg --threads {threads} explain --checkpoint {input.model} --items {input.prototype_triples} --local-items {input.local_triples} "
        "--out-dir {params.out_dir} --seed {params.seed} --settings {params.settings:q} > {log} 2>&1"


rule faithfulness_judge:
    """The judge's part of the faithfulness test, the same for every proxy (one draw of segments): its
    decisions, its own saliency, and its answers to the removals that do not depend on the proxy."""
    input:
        data=faithfulness_inputs(),
        teacher=judge_inputs(),
        recordings=scored_audio(),
    output:
        f"{R}/scores/faithfulness/judge.h5",
    params:
        sextuples=faithfulness_items(),
        judge=judge_options(),
        settings=as_json({k: v for k, v in FAITH.items() if k not in ("draws", "bins")}),
        threshold=SCORING["threshold"],
        runtime=runtime_param(),
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=retry_mem(8000),
        runtime=120,
        gpu=1,
    log:
        f"{R}/logs/faithfulness/judge.log",
    benchmark:
        f"{R}/benchmarks/faithfulness/judge.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} faithfulness-judge --items {params.sextuples} {params.judge} "
        "--seed {params.seed} --threshold {params.threshold} --out {output} --settings {params.settings:q} "
        "--runtime {params.runtime:q} > {log} 2>&1"


rule faithfulness:
    """Remove the bins a proxy's explanation names (vs baselines of equal energy) and ask the model it explains,
    in its own context window; deletion and insertion curves, L-MAC's figures, the proxy's sanity gate."""
    input:
        model=f"{R}/proxies/{{proxy}}/model.pt",
        data=lambda wildcards: faithfulness_inputs(wildcards.proxy),
        teacher=judge_inputs(),
        recordings=scored_audio(),
        baselines=f"{R}/scores/faithfulness/judge.h5",
    output:
        curves=f"{R}/scores/faithfulness/{{proxy}}.tsv",
        segments=f"{R}/scores/faithfulness/{{proxy}}.segments.tsv",
    params:
        sextuples=lambda wildcards: faithfulness_items(wildcards.proxy),
        judge=judge_options(),
        settings=as_json(FAITH),
        explain=as_json({k: config["explain"][k] for k in ("tau", "relevance")}),
        threshold=SCORING["threshold"],
        runtime=runtime_param(),
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=retry_mem(8000),
        runtime=120,
        gpu=1,
    log:
        f"{R}/logs/faithfulness/{{proxy}}.log",
    benchmark:
        f"{R}/benchmarks/faithfulness/{{proxy}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} faithfulness --checkpoint {input.model} --items {params.sextuples} "
        "{params.judge} --judge-baselines {input.baselines} --system {wildcards.proxy} --seed {params.seed} "
        "--threshold {params.threshold} "
        "--out {output.curves} --settings {params.settings:q} --explain {params.explain:q} "
        "--runtime {params.runtime:q} > {log} 2>&1"


rule faithfulness_table:
    """The faithfulness tables (per removal and energy level; the summary with 95 % intervals; mean curves)
    and one figure of deletion and insertion curves per proxy."""
    input:
        [f"{R}/scores/faithfulness/{p}.tsv" for p in PROXIES],
        [f"{R}/scores/faithfulness/{p}.segments.tsv" for p in PROXIES],
    output:
        tsv=f"{R}/tables/faithfulness.tsv",
        md=f"{R}/tables/faithfulness.md",
        summary=f"{R}/tables/faithfulness_summary.tsv",
        curves=f"{R}/tables/faithfulness_curves.tsv",
        figures=[
            report(
                f"{R}/explanations/{p}/faithfulness.png",
                caption="../report/faithfulness.rst",
                category="Explanations",
                labels={"figure": "faithfulness curves", "proxy": p},
            )
            for p in PROXIES
        ],
    params:
        curves=[f"{R}/scores/faithfulness/{p}.tsv" for p in PROXIES],
    resources:
        **LIGHT,
    log:
        f"{R}/logs/faithfulness_table.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg faithfulness-table {params.curves} --out-tsv {output.tsv} --out-md {output.md} "
        "--out-summary {output.summary} --out-curves {output.curves} --figures {output.figures} > {log} 2>&1"


rule groundtruth:
    """Score a proxy's listenable explanations against the true class stems of the demo test files."""
    input:
        model=f"{R}/proxies/{{proxy}}/model.pt",
        data=lambda wildcards: [p for i, p in enumerate(groundtruth_items(wildcards.proxy)) if i % 6 not in (0, 5)],
        corpora=[demo_folder(k) for k in DEMO_KINDS],  # the audio and its stems/ folder
    output:
        rows=f"{R}/scores/groundtruth/{{proxy}}.tsv",
        provenance=f"{R}/scores/groundtruth/{{proxy}}.provenance.json",
    params:
        sextuples=lambda wildcards: groundtruth_items(wildcards.proxy),
        settings=as_json(GROUNDTRUTH),
        explain=as_json({"tau": config["explain"]["tau"]}),
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=retry_mem(4000),
        runtime=60,
        gpu=0,
    log:
        f"{R}/logs/groundtruth/{{proxy}}.log",
    benchmark:
        f"{R}/benchmarks/groundtruth/{{proxy}}.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} groundtruth --checkpoint {input.model} --items {params.sextuples} "
        "--system {wildcards.proxy} --seed {params.seed} --out {output.rows} --settings {params.settings:q} "
        "--explain {params.explain:q} > {log} 2>&1"


rule groundtruth_table:
    """Mean ground-truth scores (SI-SDR improvement, band share; explanation vs random components) per proxy."""
    input:
        [f"{R}/scores/groundtruth/{p}.tsv" for p in PROXIES],
    output:
        tsv=f"{R}/tables/groundtruth.tsv",
        md=f"{R}/tables/groundtruth.md",
        figure=f"{R}/explanations/groundtruth.png",
    resources:
        **LIGHT,
    log:
        f"{R}/logs/groundtruth_table.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg groundtruth-table {input} --out-tsv {output.tsv} --out-md {output.md} "
        "--out-png {output.figure} > {log} 2>&1"


rule saliency:
    """The teacher's input-gradient saliency per class over frequency, on scored-split segments."""
    input:
        teacher=f"{R}/teacher/model.pt",
        features=first_features(),
        model=wavlm_inputs(),
        pairs=[
            p
            for c in CORPORA
            if SCORING["split"] in CORPORA[c]["splits"]
            for p in (labels(c, SCORING["split"], "manifest.tsv"), labels(c, SCORING["split"], "targets.h5"))
        ],
        recordings=scored_audio(),
    output:
        profiles=f"{R}/saliency/teacher.npz",
        figure=f"{R}/saliency/teacher.png",
    params:
        wavlm=lambda wildcards, input: input.model[0] if DEMO_MODEL else FEATURES["model"],
        settings=as_json({k: v for k, v in SALIENCY.items() if k != "bands"}),  # bands: the saliency table's
        spectrogram=as_json({k: config["spectrogram"][k] for k in ("n_fft", "win_length")}),  # the raw audio's STFT
        runtime=runtime_param(),
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=retry_mem(16000),
        runtime=120,
        gpu=1,
    log:
        f"{R}/logs/saliency.log",
    benchmark:
        f"{R}/benchmarks/saliency.tsv"
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg --threads {threads} saliency --teacher {input.teacher} --wavlm {params.wavlm:q} "
        "--features {input.features} --items {input.pairs} --out {output.profiles} --seed {params.seed} "
        "--settings {params.settings:q} --spectrogram {params.spectrogram:q} --runtime {params.runtime:q} > {log} 2>&1"


rule saliency_table:
    """Rank correlation over frequency bands of the teacher's saliency and each proxy's class prototypes."""
    input:
        saliency=f"{R}/saliency/teacher.npz",
        prototypes=[f"{R}/explanations/{p}/prototypes.npz" for p in PROXIES],
    output:
        tsv=f"{R}/tables/saliency.tsv",
        md=f"{R}/tables/saliency.md",
    params:
        systems=list(PROXIES),
        bands=SALIENCY["bands"],
    resources:
        **LIGHT,
    log:
        f"{R}/logs/saliency_table.log",
    conda:
        "../../envs/proxyseg.yaml"
    shell:
        "proxyseg saliency-table --saliency {input.saliency} --prototypes {input.prototypes} "
        "--systems {params.systems} --bands {params.bands} --out-tsv {output.tsv} --out-md {output.md} > {log} 2>&1"
