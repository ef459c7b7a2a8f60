"""Plain-text tables for terminal output."""

from __future__ import annotations

from typing import Any

from ..utils.table import format_table

__all__ = ["format_recommendation", "format_selection", "format_table", "format_transfer"]


def _score(value: Any) -> Any:
    return "failed" if value is None or (isinstance(value, float) and value != value) else value


def _tolerance(value: float) -> str:
    """``1e-06`` -> ``1e-6`` (the relative tie tolerance as people write it)."""
    text = f"{value:g}"
    return text.replace("e-0", "e-").replace("e+0", "e+")


def _ties_and_failures(result: Any) -> list[str]:
    lines = []
    ranking = result.ranking
    for group in ranking.ties:
        values = [e.tie_break for e in ranking.entries if e.name in group]
        finite = [v for v in values if v is not None]
        if ranking.tie_break_metric and finite and len(set(finite)) == len(values):
            how = f"broken by {ranking.tie_break_metric}"
        elif ranking.tie_break_metric:
            how = f"{ranking.tie_break_metric} does not break it either; ordered by name"
        else:
            how = "ordered by name"
        lines.append(f"tie: {', '.join(group)} (within {_tolerance(ranking.rtol)}); {how}")
    for name, reason in result.failed.items():
        lines.append(f"failed: {name}: {reason}")
    return lines


def format_recommendation(result: Any) -> str:
    """``recommended model: NAME (by METRIC; stays first in 94% of 50 resamples)`` (or ``uncertain: ...``)."""
    rec = result.recommendation
    if rec is None:
        return "recommended model: none (every candidate failed)"
    text = f"recommended model: {rec.model} (by {rec.metric}"
    if rec.stability is None:
        note = rec.stability_note or "not measured"
        text += f"; stability {note})" if note.startswith("not measured") else f"; stability not measured: {note})"
        return text
    text += f"; stays first in {rec.stability:.0%} of {rec.resamples} resamples of the scored images)"
    if rec.uncertain:
        text += f" -- uncertain (below {rec.threshold:.0%})"
        if rec.runner_up is not None:
            text += f"; {rec.runner_up} is first in {rec.runner_up_share:.0%}"
    return text


def format_selection(result: Any) -> str:
    """The console report of :func:`pickwise.selection.job.select_models`: table, ties, failures, pick, verify."""
    metrics = list(result.metrics)
    extra = [result.tie_break_metric] if result.tie_break_metric and result.tie_break_metric not in metrics else []
    cols = metrics + extra
    headers = ["rank", "model", *cols, *[f"{m} s" for m in metrics]]
    rows = []
    for e in result.ranking.entries:
        rows.append(
            [e.rank, e.name]
            + [_score(result.scores[m].get(e.name)) for m in cols]
            + [result.seconds[m].get(e.name, "-") for m in metrics]
        )
    for name in result.failed:
        rows.append(["-", name] + [_score(result.scores[m].get(name)) for m in cols] + ["-"] * len(metrics))
    lines = [format_table(headers, rows)]
    lines += _ties_and_failures(result)
    lines.append(format_recommendation(result))
    if result.verify is not None:
        v = result.verify
        acc_rows = [[m, "failed" if a is None else a] for m, a in v.accuracy.items()]
        lines.append(f"verify ({v.mode}): measured test accuracy")
        lines.append(format_table(["model", f"{v.mode} acc"], acc_rows))
        for name, reason in v.failures.items():
            if name not in result.failed:
                lines.append(f"verify failed: {name}: {reason}")
        if v.evaluation:
            ev_rows = [[m, e["weighted_tau"], e["top1_regret"]] for m, e in v.evaluation.items()]
            lines.append(format_table(["metric", "weighted_tau", "top1_regret"], ev_rows))
        else:
            lines.append("weighted_tau: not computed (fewer than two candidates with a measured accuracy)")
    if result.json_path:
        lines.append(f"wrote {result.json_path}")
    return "\n".join(lines)


def format_transfer(result: Any) -> str:
    """The console report of :func:`pickwise.selection.job.transfer`."""
    sel = result.selection
    metric = result.metric
    parts = [format_selection(sel).rsplit("\nwrote ", 1)[0]]
    rows = []
    for e in sel.ranking.entries:
        rec = result.finetune.get(e.name)
        acc = "failed" if e.name in result.failures else ("-" if rec is None else round(rec["acc"], 4))
        rows.append([e.rank, e.name, e.score, acc])
    parts.append(format_table(["rank", "model", metric, "fine-tuned test acc"], rows))
    for name, reason in result.failures.items():
        parts.append(f"fine-tuning failed: {name}: {reason}")
    parts.append(result.summary())
    if result.json_path:
        parts.append(f"wrote {result.json_path}")
    return "\n".join(parts)
