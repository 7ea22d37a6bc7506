"""The step graph of a plan as text, Mermaid or Graphviz dot (``plait graph``)."""

from __future__ import annotations

from plait.model.plan import PHASES, Plan, StepPlan

_PHASE_TITLE = {"main": "steps", "on_failure": "on_failure", "finally": "finally"}


def _label(node: StepPlan) -> str:
    what = node.kind if node.is_group else (node.uses or "shell")
    extra = []
    if node.if_:
        extra.append(f"if {node.if_}")
    if node.for_each is not None:
        extra.append("for_each")
    if node.retry.max:
        extra.append(f"retries {node.retry.max}")
    if node.on_error != "fail":
        extra.append(f"on_error {node.on_error}")
    suffix = f" ({', '.join(extra)})" if extra else ""
    return f"{node.key} [{what}]{suffix}"


def render_text(plan: Plan) -> str:
    lines = [f"{plan.name}"]
    for phase in PHASES:
        roots = plan.roots.get(phase, ())
        if not roots:
            continue
        lines.append(f"{_PHASE_TITLE[phase]}:")
        for key in roots:
            _text_node(plan, key, 1, lines)
    return "\n".join(lines)


def _text_node(plan: Plan, key: str, depth: int, lines: list[str]) -> None:
    node = plan.nodes[key]
    needs = f"  <- needs {', '.join(node.deps)}" if node.deps else ""
    lines.append(f"{'  ' * depth}- {_label(node)}{needs}")
    for child in node.children:
        _text_node(plan, child, depth + 1, lines)


def _ident(key: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in key)


def render_mermaid(plan: Plan) -> str:
    lines = ["flowchart TD"]
    for phase in PHASES:
        roots = plan.roots.get(phase, ())
        if not roots:
            continue
        lines.append(f"  subgraph {phase}")
        for key in roots:
            _mermaid_node(plan, key, lines, "    ")
        lines.append("  end")
    for node in plan.nodes.values():
        for dep in node.deps:
            lines.append(f"  {_ident(dep)} --> {_ident(node.key)}")
    return "\n".join(lines)


def _mermaid_node(plan: Plan, key: str, lines: list[str], pad: str) -> None:
    node = plan.nodes[key]
    text = _label(node).replace('"', "'")
    if node.children:
        lines.append(f'{pad}subgraph {_ident(key)}["{text}"]')
        for child in node.children:
            _mermaid_node(plan, child, lines, pad + "  ")
        lines.append(f"{pad}end")
    else:
        lines.append(f'{pad}{_ident(key)}["{text}"]')


def render_dot(plan: Plan) -> str:
    lines = [f'digraph "{plan.name}" {{', "  rankdir=TB;", "  node [shape=box];"]
    for phase in PHASES:
        roots = plan.roots.get(phase, ())
        if roots:
            lines.append(f'  subgraph "cluster_{phase}" {{ label="{_PHASE_TITLE[phase]}";')
            for key in roots:
                _dot_node(plan, key, lines, "    ")
            lines.append("  }")
    for node in plan.nodes.values():
        for dep in node.deps:
            lines.append(f'  "{dep}" -> "{node.key}";')
    lines.append("}")
    return "\n".join(lines)


def _dot_node(plan: Plan, key: str, lines: list[str], pad: str) -> None:
    node = plan.nodes[key]
    text = _label(node).replace('"', "'")
    if node.children:
        lines.append(f'{pad}subgraph "cluster_{key}" {{ label="{text}"; style=dashed;')
        lines.append(f'{pad}  "{key}" [shape=point, label=""];')
        for child in node.children:
            _dot_node(plan, child, lines, pad + "  ")
        lines.append(f"{pad}}}")
    else:
        lines.append(f'{pad}"{key}" [label="{text}"];')


RENDERERS = {"text": render_text, "mermaid": render_mermaid, "dot": render_dot}
