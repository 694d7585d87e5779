"""The report of an evaluation directory: ``results.csv``, ``report.md`` and ``figures/*.png``,
all derived from ``results.jsonl`` and ``meta.json`` (so it can be rebuilt at any time with
``k3m evaluate --report-only``).

The report leads with the question the evaluation exists for: on classification and QA, is
K3M at or above the no-KG baseline at every ratio of TMR, TNR and TINR, and by how much at
100%? It states the answer as measured, whichever way it goes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from k3m.evaluation.baselines import BASELINES
from k3m.evaluation.corruption import SETTINGS
from k3m.evaluation.models import label
from k3m.evaluation.plots import plot_metric
from k3m.evaluation.reference import PAPER_VALUES
from k3m.evaluation.results import ResultStore
from k3m.evaluation.tasks import TASKS

CLEAN = "clean"
QUESTION_TASKS = (("classification", "accuracy"), ("qa", "rank@10"))
QUESTION_SETTINGS = ("TMR", "TNR", "TINR")


def task_title(task: str) -> str:
    return TASKS[task].title if task in TASKS else task


def long_table(cells: list[dict]) -> pd.DataFrame:
    """One row per (task, mode, setting, ratio, model, metric), averaged over seeds."""
    rows = [
        {"task": c["task"], "mode": c["mode"], "setting": c["setting"], "ratio": c["ratio"], "model": c["model"],
         "seed": c["seed"], "metric": m, "value": v}
        for c in cells
        for m, v in c["metrics"].items()
    ]
    columns = ["task", "mode", "setting", "ratio", "model", "metric", "value", "seeds"]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows)
    keys = ["task", "mode", "setting", "ratio", "model", "metric"]
    return df.groupby(keys, sort=False).agg(value=("value", "mean"), seeds=("seed", "nunique")).reset_index()[columns]


def with_clean_everywhere(df: pd.DataFrame, settings: list[str]) -> pd.DataFrame:
    """The shared clean (ratio 0) cells copied under every setting, for tables and plots."""
    clean = df[df["setting"] == CLEAN]
    copies = [clean.assign(setting=s) for s in settings]
    return pd.concat([df[df["setting"] != CLEAN], *copies], ignore_index=True)


def pct(x: float) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.1f}"


def ratio_label(r: float) -> str:
    return f"{100 * r:.0f}%"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def answer_question(grid: pd.DataFrame, mode: str, sizes: dict) -> list[str]:
    """The lead section: K3M − no-KG per ratio of TMR/TNR/TINR for classification and QA."""
    lines = []
    for task, metric in QUESTION_TASKS:
        part = grid[(grid["task"] == task) & (grid["metric"] == metric) & (grid["mode"] == mode)]
        if not {"k3m", "no_kg"} <= set(part["model"]):
            lines.append(f"- **{task_title(task)}**: not answered — this run has no K3M and no-KG results for it.")
            continue
        wide = part.pivot_table(index=["setting", "ratio"], columns="model", values="value")
        settings = [s for s in QUESTION_SETTINGS if s in wide.index.get_level_values("setting")]
        ratios = sorted(wide.index.get_level_values("ratio").unique())
        # the clean point is shared by all settings: counted once, below
        corrupted = [wide.loc[p] for p in corrupted_points(wide, settings, ratios)]
        wins, total = sum(bool(v["k3m"] >= v["no_kg"]) for v in corrupted), len(corrupted)
        rows = grid_rows(wide, settings, ratios, lambda v: f"{100 * (v['k3m'] - v['no_kg']):+.1f}")
        at_100 = [f"{s} {100 * (k - n):+.1f} pp ({pct(k)} vs {pct(n)})"
                  for s in settings if (s, 1.0) in wide.index
                  for k, n in [(wide.loc[(s, 1.0), "k3m"], wide.loc[(s, 1.0), "no_kg"])]]
        clean_ok = None
        if (settings[0], 0.0) in wide.index:
            k, n = wide.loc[(settings[0], 0.0), "k3m"], wide.loc[(settings[0], 0.0), "no_kg"]
            clean_ok = bool(k >= n)
            clean = f"clean (0%): {100 * (k - n):+.1f} pp ({pct(k)} vs {pct(n)})"
        every = wins == total and clean_ok is not False
        verdict = "**yes**" if every else "**no**"
        detail = f"at or above at {wins} of {total} corrupted (setting, ratio) points"
        if clean_ok is not None:
            detail += f"; {clean}"
        missing = [s for s in QUESTION_SETTINGS if s not in settings]
        lines.append(
            f"- **{task_title(task)}** ({metric}): K3M at or above no-KG at every ratio of {', '.join(settings)}: "
            f"{verdict} — {detail}. At 100%: {'; '.join(at_100) or 'not run'}."
            + (f" ({', '.join(missing)} not in this run.)" if missing else "")
        )
        lines += ["", f"  K3M − no-KG, {metric}, percentage points:", ""]
        lines += ["  " + line for line in markdown_table(["setting"] + [ratio_label(r) for r in ratios], rows).splitlines()]
        if part["model"].nunique() > 2:
            lines += ["", "  " + best_models_line(part)]
        n = sizes.get(task, {}).get("n_test")
        if n and clean_ok is not None:
            # binomial standard error of one proportion near the clean value: the noise floor
            p = float(wide.loc[(settings[0], 0.0), "k3m"])
            lines += ["", f"  {n} test examples: one {metric} value near {pct(p)}% has a standard error of "
                          f"≈ {100 * (p * (1 - p) / n) ** 0.5:.1f} pp; smaller differences are not resolved by this run."]
            trivial = sizes.get(task, {}).get("n_test_at_most_10_candidates")
            if trivial is not None and metric == "rank@10":
                lines[-1] += (f" {trivial} of the {n} questions ask a property with ≤ 10 values, where Rank@10 is 1 "
                              "for any model: Rank@1 and MRR (tables below) separate the models more sharply.")
        lines.append("")
    return lines


def corrupted_points(wide: pd.DataFrame, settings: list[str], ratios: list[float]) -> list[tuple[str, float]]:
    """The (setting, ratio) points of a pivoted grid with a corruption (ratio > 0)."""
    return [(s, r) for s in settings for r in ratios if r > 0 and (s, r) in wide.index]


def grid_rows(wide: pd.DataFrame, settings: list[str], ratios: list[float], cell) -> list[list[str]]:
    """A table row per setting, ``cell(values of the point)`` per ratio ("–" where not run)."""
    return [[s] + [cell(wide.loc[(s, r)]) if (s, r) in wide.index else "–" for r in ratios] for s in settings]


BASELINE_TASKS = (("classification", "accuracy"), ("qa", "rank@1"), ("alignment", "f1"), ("neighbours", "category_share@10"))


def against_baselines(grid: pd.DataFrame, mode: str) -> list[str]:
    """K3M against the strongest off-the-shelf representation at every point: which model
    is best, by how much K3M leads or trails, and how much of its clean value it keeps."""
    lines = []
    for task, metric in BASELINE_TASKS:
        part = grid[(grid["task"] == task) & (grid["metric"] == metric) & (grid["mode"] == mode)]
        others = [m for m in dict.fromkeys(part["model"]) if m in BASELINES]
        if "k3m" not in set(part["model"]) or not others:
            continue
        wide = part.pivot_table(index=["setting", "ratio"], columns="model", values="value")
        ratios = sorted(wide.index.get_level_values("ratio").unique())
        settings = list(dict.fromkeys(wide.index.get_level_values("setting")))
        clean = wide.xs(0.0, level="ratio").iloc[0] if 0.0 in ratios else None
        corrupted = [wide.loc[p] for p in corrupted_points(wide, settings, ratios)]
        wins, total = sum(bool(v["k3m"] >= v[others].max()) for v in corrupted), len(corrupted)

        def cell(values: pd.Series) -> str:
            base, best, k3m = values[others].idxmax(), values.idxmax(), values["k3m"]
            lead = f"{100 * (k3m - values[base]):+.1f} vs {label(base)}"
            return f"{pct(k3m)} ({lead})" + ("" if best == "k3m" else f"; best {label(best)} {pct(values[best])}")

        rows = grid_rows(wide, settings, ratios, cell)
        verdict = []
        if clean is not None:
            base = clean[others].idxmax()
            verdict.append(f"clean: K3M {pct(clean['k3m'])} vs {label(base)} {pct(clean[base])} "
                           f"({'at or above' if clean['k3m'] >= clean[base] else 'BELOW'})")
        verdict.append(f"corrupted points where K3M is at or above every off-the-shelf representation: {wins} of {total}")
        if clean is not None:
            kept = [f"{s} 100% {100 * wide.loc[(s, 1.0), 'k3m'] / clean['k3m']:.0f}%" for s in settings if (s, 1.0) in wide.index]
            verdict.append("share of its clean value K3M keeps: " + ", ".join(kept))
        lines.append(f"- **{task_title(task)}** ({metric}): " + "; ".join(verdict) + ".")
        lines += ["", f"  K3M {metric} (its lead over the best off-the-shelf representation, pp; the best of all "
                      "models where it is not K3M):", ""]
        lines += ["  " + line for line in markdown_table(["setting"] + [ratio_label(r) for r in ratios], rows).splitlines()]
        lines.append("")
    return lines


def best_models_line(part: pd.DataFrame) -> str:
    """Which of all compared models leads on clean data and at 100% of each setting, with
    K3M's own value beside it: the question compares K3M with no-KG only, this line keeps a
    stronger baseline from going unnoticed."""
    wide = part.pivot_table(index=["setting", "ratio"], columns="model", values="value")
    points = [("clean", wide.xs(0.0, level="ratio").iloc[0])] if 0.0 in wide.index.get_level_values("ratio") else []
    points += [(f"100% {setting}", wide.loc[(setting, 1.0)]) for setting in dict.fromkeys(wide.index.get_level_values("setting"))
               if (setting, 1.0) in wide.index]
    shown = []
    for where, values in points:
        best = values.idxmax()
        text = f"{where}: {label(best)} {pct(values[best])}"
        if best != "k3m" and "k3m" in values:
            text += f" (K3M {pct(values['k3m'])})"
        shown.append(text)
    return "Best of all compared models — " + "; ".join(shown) + "."


def timing_section(store: ResultStore, cells: list[dict], tasks: list[str]) -> list[str]:
    timings = pd.DataFrame(store.timings())
    lines = []
    if timings.empty:
        return ["No timings recorded."]

    def total(part, name=None):
        sel = timings[timings["part"] == part]
        if name is not None:
            sel = sel[sel["name"] == name]
        return float(sel["seconds"].sum())

    rows = []
    pretrain = timings[timings["part"] == "pretrain"]
    for name in dict.fromkeys(pretrain["name"]):
        elsewhere = "elsewhere" in pretrain and bool(pretrain.loc[pretrain["name"] == name, "elsewhere"].fillna(False).any())
        where = " (by `--pretrain-only`, beside the grid)" if elsewhere else ""
        rows.append([f"pretraining {label(name)}{where}", f"{total('pretrain', name) / 60:.1f}"])
    if (timings["part"] == "transe").any():
        rows.append(["TransE training (PyKEEN)", f"{total('transe') / 60:.1f}"])
    for name in dict.fromkeys(timings.loc[timings["part"] == "encode", "name"]):
        rows.append([f"encoding items, {label(name)} (all conditions)", f"{total('encode', name) / 60:.1f}"])
    if (timings["part"] == "encode_lp").any():
        rows.append(["encoding link-prediction items (clean)", f"{total('encode_lp') / 60:.1f}"])
    cell_df = pd.DataFrame(cells)
    for task in tasks:
        if not cell_df.empty and (cell_df["task"] == task).any():
            rows.append([f"{task}: heads / scoring", f"{cell_df.loc[cell_df['task'] == task, 'seconds'].sum() / 60:.1f}"])
    grid = total("encode") + (cell_df.loc[cell_df["task"].isin(["classification", "qa"]), "seconds"].sum() if not cell_df.empty else 0.0)
    rows.append(["**classification + QA grid (encoding + heads, no pretraining)**", f"**{grid / 60:.1f}**"])
    runs = pd.DataFrame(store.records)
    if "run" in runs:
        walls = runs.groupby("run")["run_elapsed"].max()
        rows.append([f"wall time of the {len(walls)} `k3m evaluate` invocation(s), incl. pretraining", f"{walls.sum() / 60:.1f}"])
    lines.append(markdown_table(["part", "minutes"], rows))
    lines.append("")
    lines.append(
        "Encoding is shared by all tasks of a condition and is counted once, in the grid line. "
        "Timings are wall-clock on a shared machine (other jobs running), so they are noisy."
    )
    return lines


def write_report(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    store = ResultStore(out / "results.jsonl")
    meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").is_file() else {}
    config = meta.get("config", {})
    settings = config.get("settings") or list(SETTINGS)
    cells = store.cells()
    df = long_table(cells)
    grid = with_clean_everywhere(df, settings)

    # CSV: one row per (task, mode, metric, setting, model), one column per ratio
    if not grid.empty:
        wide = grid.pivot_table(index=["task", "mode", "metric", "setting", "model"], columns="ratio", values="value")
        wide.columns = [ratio_label(c) for c in wide.columns]
        wide.reset_index().to_csv(out / "results.csv", index=False, float_format="%.6f")

    md = [f"# K3M evaluation report — {Path(meta.get('build', {}).get('path', '?')).name}", ""]
    md.append(f"Written {time.strftime('%Y-%m-%d %H:%M')} from `{store.path.name}` ({len(cells)} cells). "
              "Protocol and definitions: `docs/evaluate.md`.")
    md.append("")
    md += setup_section(meta)
    modes = list(dict.fromkeys(df["mode"])) or [config.get("mode", "probe")]
    for mode in modes:
        if set(grid["model"]) & set(BASELINES):
            md += ["", f"## Against what users already have ({mode} mode)", ""]
            md += against_baselines(grid, mode)
        md += ["", f"## The question ({mode} mode)", ""]
        md += answer_question(grid, mode, meta.get("tasks", {}))
    lp = df[df["task"].isin([n for n, t in TASKS.items() if t.kg_anchor])]
    if not lp.empty:
        md += ["", "## Link prediction: K3M and TransE side by side", ""]
        md += lp_section(lp, meta)
    md += ["", "## All results", ""]
    md.append("Values in percent. Ratio 0% is the one clean condition, repeated in every setting's row. "
              "Rows marked *paper* are the paper's published numbers on Taobao data (different data, "
              "different scale), for context only.")
    figures = []
    for (task, mode), part in grid.groupby(["task", "mode"], sort=False):
        metrics = list(dict.fromkeys(part["metric"]))
        md += ["", f"### {task_title(task)} — {mode} mode", ""]
        if task in TASKS and TASKS[task].kg_anchor:
            md.append("See the side-by-side table above.")
            continue
        if task in TASKS and TASKS[task].note:  # what a reader of the table needs to know
            md.append(TASKS[task].note)
        for metric in [m for m in metrics if m != "mean_rank"]:
            md += ["", f"**{metric}**", ""]
            md.append(results_table(part[part["metric"] == metric], task, metric, settings))
            fig = plot_metric(part[part["metric"] == metric], task, metric, settings, out / "figures" / f"{task}_{metric.replace('@', 'at')}_{mode}.png")
            figures.append(fig)
            md += ["", f"![{task} {metric}](figures/{fig.name})"]
    md += ["", "## Time", ""]
    md += timing_section(store, cells, list(dict.fromkeys(df["task"])))
    (out / "report.md").write_text("\n".join(md) + "\n")
    return out / "report.md"


def setup_section(meta: dict) -> list[str]:
    config, build = meta.get("config", {}), meta.get("build", {})
    if not config:
        return []
    pre = config.get("pretrain", {})
    tasks = meta.get("tasks", {})
    lines = [
        "## Setup",
        "",
        f"- Build: `{build.get('path')}` — {build.get('items')} items, {build.get('triples')} triples; "
        f"item splits {build.get('splits')}; triple splits {build.get('triple_splits')}.",
        f"- Mode: **{config.get('mode')}**; seed {config.get('seed')}; models: {', '.join(label(m) for m in config.get('models', []))}.",
        f"- Grid: tasks {', '.join(config.get('tasks', []))}; settings {', '.join(config.get('settings', []))}; "
        f"ratios {', '.join(ratio_label(r) for r in config.get('ratios', []))}.",
        *scope_lines(config),
        f"- Pools: {meta.get('pools', {}).get('finetune')} fine-tuning items (train split), "
        f"{meta.get('pools', {}).get('test')} test items (test split), drawn by whole product groups.",
        f"- Pretraining budget (the same for every model): `{pre.get('config')}` with `{' '.join(pre.get('overrides', []))}`"
        + (f"; user checkpoints: {config.get('checkpoints')}" if config.get("checkpoints") else "") + ".",
        f"- Task sizes: {', '.join(f'{k} {v}' for k, v in tasks.items())}.",
    ]
    return lines


def scope_lines(config: dict) -> list[str]:
    """Say plainly when a run covers less than the full protocol."""
    from k3m.evaluation.models import MODELS

    left_out = [
        (what, [x for x in everything if x not in config.get(key, [])])
        for what, key, everything in (
            ("settings", "settings", list(SETTINGS)), ("models", "models", list(MODELS)), ("tasks", "tasks", list(TASKS))
        )
    ]
    left_out = [f"{what} {', '.join(x)}" for what, x in left_out if x]
    return [f"- **Reduced grid** — not run here: {'; '.join(left_out)}."] if left_out else []


def results_table(part: pd.DataFrame, task: str, metric: str, settings: list[str]) -> str:
    ratios = sorted(part["ratio"].unique())
    rows = []
    for setting in settings:
        sub = part[part["setting"] == setting]
        for model in dict.fromkeys(sub["model"]):
            values = sub[sub["model"] == model].set_index("ratio")["value"]
            rows.append([setting, label(model)] + [pct(values.get(r)) for r in ratios])
        for ref_model in dict.fromkeys(v.paper_model for v in PAPER_VALUES if v.task == task and v.metric == metric):
            refs = {v.ratio: v for v in PAPER_VALUES if v.task == task and v.metric == metric and v.paper_model == ref_model
                    and v.setting in (setting, "clean")}
            if refs:
                rows.append([setting, f"*paper: {ref_model}*"] + [
                    (("≈" if refs[r].approximate else "") + f"{refs[r].value:.1f}") if r in refs else "" for r in ratios
                ])
    return markdown_table(["setting", "model"] + [ratio_label(r) for r in ratios], rows)


def lp_section(lp: pd.DataFrame, meta: dict) -> list[str]:
    metrics = ["mrr", "hits@1", "hits@3", "hits@10"]
    typed = "typed_mrr" in set(lp["metric"])  # results written before the typed view lack it
    rows = []
    for (mode, model), part in lp.groupby(["mode", "model"], sort=False):
        values = part.set_index("metric")["value"]
        rows.append([label(model), mode] + [f"{values.get(m, float('nan')):.3f}" for m in metrics]
                    + ([f"{values.get('typed_' + m, float('nan')):.3f}" for m in ("mrr", "hits@10")] if typed else []))
    size = meta.get("tasks", {}).get("link_prediction", {})
    transe = meta.get("config", {}).get("transe_training", {})
    header = ["model", "mode", "filtered MRR", "Hits@1", "Hits@3", "Hits@10"]
    header += ["type-constrained MRR", "type-constrained Hits@10"] if typed else []
    return [
        markdown_table(header, rows),
        "",
        f"Value prediction ⟨item, property, ?⟩ for {size.get('n_queries', '?')} held-out test facts "
        f"({size.get('n_items', '?')} items), every value a candidate, filtered against all known facts, "
        f"realistic ranks (the standard protocol: the first four columns). TransE: PyKEEN, dim "
        f"{transe.get('embedding_dim')}, {transe.get('num_epochs')} epochs, batch {transe.get('batch_size')}, "
        "trained on the same train triples."
        + (" Type-constrained: the same scores, with only the values seen with the asked property "
           "competing (what the paper's within-property value corruption trains for)." if typed else ""),
    ]
