"""The model-file browser: the tensors of any model file as a tree, and one tensor's values.

Opening the file and reading a tensor's values are jobs (``tui.background``): a large file or
tensor never freezes the screen, and an unreadable one becomes a message in place. The tree's
nodes are added as they are expanded, so a model of thousands of tensors opens at once. The
``engine.store.modelfiles`` and ``engine.use`` modules are imported inside the jobs: they import
torch, which would otherwise hold up the first frame. Every name comes from a file someone else
wrote, so each is shown as text with its control characters escaped, never as markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Footer,
    Header,
    LoadingIndicator,
    Static,
    TabbedContent,
    TabPane,
    Tree,
)
from textual.widgets.tree import TreeNode
from textual.worker import Worker
from textual_plotext import PlotextPlot

from engine.errors import TorchdeckError
from engine.store import rundir, runs
from engine.text import fmt, plural, printable, size_text
from tui.background import answer, failure, in_thread
from tui.dialogs import AskDialog
from tui.widgets import plain

if TYPE_CHECKING:
    from engine.store.modelfiles import ModelFile
    from engine.use.tensortree import Node


def model_path(path: Path) -> Path:
    """The file to open for ``path``: a run directory's checkpoint, else ``path`` itself (a file,
    or a folder ``open_file`` reads: a safetensors index or its one safetensors file)."""
    if path.is_dir() and any((path / name).exists() for name in (rundir.EVENTS, rundir.LAST, rundir.BEST)):
        return runs.locate(path)[0]
    return path


def _existing(text: str) -> Path:
    path = Path(text).expanduser()
    if not text or not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    return path


def file_dialog(start: Path) -> AskDialog:
    """The question the run browser's "open a file" asks; its answer is a path that exists."""
    return AskDialog("open a model file", "A torch.save, TorchScript, safetensors or ONNX file (or a run directory):",
                     f"{start}/", _existing)


def _totals(node: Node) -> str:
    return f"{node.parameters:,} · {size_text(node.bytes)}"


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def _label(node: Node) -> Text:
    """A tree line: the name, then shape and dtype for a tensor, and the subtree's totals, dimmed."""
    label = plain(node.name or "(top)", "bold" if node.children else "")
    if node.tensor is not None:
        label.append(printable(f"  {_shape(node.tensor.shape)} {node.tensor.dtype}"), style="cyan")
    label.append(f"  {_totals(node)}", style="dim")
    return label


def _summary(model: ModelFile, shown: Node, pattern: str) -> Text:
    """The file in two lines: what wrote it and where it is, its totals (and the filter's)."""
    from engine.store.modelfiles import FORMATS

    text = Text.assemble((FORMATS[model.format], "bold"), " · ", plain(model.path))
    totals = [plural(len(model.tensors), "tensor"), f"{model.parameters:,} parameters", size_text(model.nbytes)]
    if model.weights_at:
        totals.append(f"weights at {model.weights_at!r}")
    if pattern:
        totals.append(f"filter {pattern!r}: {shown.tensors} shown")
    return text.append("\n" + printable(" · ".join(totals)))


def _value(value: Any) -> str:
    text = printable(str(value))
    return text if len(text) <= 200 else text[:199] + "…"


def _file_text(model: ModelFile) -> Text:
    """Everything the file holds besides its weights, section by section (empty ones left out)."""
    sections: list[tuple[str, list[str]]] = [
        ("notes", [printable(note) for note in model.notes]),
        ("facts", [f"{printable(key)}  {_value(value)}" for key, value in model.facts.items()]),
        *((kind, ["  ".join(f"{printable(str(k))} {_value(v)}" for k, v in part.items()) for part in parts])
          for kind, parts in (("optimizers", model.optimizers), ("schedulers", model.schedulers))),
        *((side, [printable(f"{io.get('name')}  {io.get('shape')}  {io.get('dtype')}") for io in ios])
          for side, ios in (("inputs", model.inputs), ("outputs", model.outputs))),
        ("other state dicts", [printable(f"{where or '(top)'}  {plural(len(found), 'tensor')}")
                               for where, found in model.more.items()]),
        ("globals the pickle names (not loaded)", [printable(name) for name in model.globals]),
    ]
    text = Text()
    for title, lines in sections:
        if lines:
            text.append(f"{title}\n", style="bold").append("\n".join(lines) + "\n\n")
    text.rstrip()
    return text if text.plain else Text("nothing but tensors", style="dim")


def _stats_text(node: Node, found: dict[str, Any] | str | None) -> Text:
    """A tensor's header, then its statistics (None: being computed; a string: why there are none)."""
    tensor = node.tensor
    text = Text.assemble(plain(node.path, "bold"), "\n",
                         printable(f"{_shape(tensor.shape)} · {tensor.dtype} · {_totals(node)}"), "\n")
    if found is None:
        return text.append("reading the values…", style="dim")
    if isinstance(found, str):
        return text.append(printable(found), style="red")
    return text.append(
        f"min  {fmt(found['min']):>9}  max {fmt(found['max']):>9}\n"
        f"mean {fmt(found['mean']):>9}  std {fmt(found['std']):>9}\n"
        f"NaN {found['nan']:,} · Inf {found['inf']:,} · zeros {found['zeros']:.1%}")


def _module_text(node: Node) -> Text:
    return Text.assemble(plain(node.path or "the whole file", "bold"), "\n",
                         f"{plural(node.tensors, 'tensor')}\n{node.parameters:,} parameters\n{size_text(node.bytes)}")


class Histogram(PlotextPlot):
    """How a tensor's finite values spread: counts per bin between their min and max."""

    def show(self, edges: list[float], counts: list[int]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title("values" if counts else "no finite values")
        if counts:
            centers = [(low + high) / 2 for low, high in zip(edges, edges[1:])] if len(edges) > 2 else edges[:1]
            plt.bar(centers, counts, width=1, marker="hd")
            ticks = [edges[0], (edges[0] + edges[-1]) / 2, edges[-1]] if len(edges) > 2 else edges[:1]
            plt.xticks(ticks, [fmt(tick) for tick in ticks])
            plt.yticks(sorted({0, max(counts) // 2, max(counts)}))
        self.refresh()


class TensorScreen(Screen):
    """One model file: its tensors as a tree of module paths, the highlighted node's details,
    and a second tab with the rest of what the file holds (facts, optimizers, signature, notes)."""

    DEFAULT_CSS = """
    TensorScreen #summary { height: auto; max-height: 3; padding: 0 1; }
    TensorScreen #message { color: $error; padding: 1 1; height: auto; }
    TensorScreen TabbedContent, TensorScreen ContentSwitcher, TensorScreen TabPane { height: 1fr; }
    TensorScreen #tree { width: 3fr; min-width: 30; }
    TensorScreen #details { width: 2fr; min-width: 32; padding: 0 1; }
    TensorScreen #stats { height: auto; }
    TensorScreen Histogram { height: 1fr; min-height: 6; }
    TensorScreen #facts { padding: 0 1; }
    """
    BINDINGS = [
        Binding("q", "app.leave", "back"),
        Binding("escape", "app.leave", "back", show=False),
        Binding("slash", "filter", "filter"),
    ]
    AUTO_FOCUS = "#tree"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.model: ModelFile | None = None
        self.pattern = ""
        self.shown: Node | None = None  # the node whose details are on screen
        self._jobs: dict[str, Worker] = {}  # the job of each group whose failure this screen shows

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(plain(self.path), id="summary")
        yield LoadingIndicator()
        yield Static(id="message")
        with TabbedContent():
            with TabPane("tensors", id="tensors"):
                with Horizontal():
                    yield Tree(Text(), id="tree")
                    with Vertical(id="details"):
                        yield Static(id="stats")
                        yield Histogram()
            with TabPane("file", id="file"):
                with VerticalScroll():
                    yield Static(id="facts")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = printable(self.path.name)
        self.query_one(TabbedContent).display = False
        self.query_one("#message").display = False
        self._jobs["open"] = self.load(self.path)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A job that failed on a bug: its line where that job's answer would have gone."""
        if (problem := failure(event)) is None:
            return
        if event.worker is self._jobs.get("open"):
            self._failed(problem)
        elif event.worker is self._jobs.get("stats") and self.shown is not None:
            self._computed(self.shown, problem)

    # --- the file -----------------------------------------------------------------------

    @in_thread("open")
    def load(self, path: Path) -> None:
        from engine.store.modelfiles import open_file

        try:
            answer(self._opened, open_file(model_path(path)))
        except TorchdeckError as exc:
            answer(self._failed, str(exc))

    def _failed(self, problem: str) -> None:
        self.query_one(LoadingIndicator).display = False
        message = self.query_one("#message", Static)
        message.update(plain(problem))
        message.display = True

    def _opened(self, model: ModelFile) -> None:
        self.model = model
        self.query_one(LoadingIndicator).display = False
        tabs = self.query_one(TabbedContent)
        tabs.display = True
        self.query_one("#facts", Static).update(_file_text(model))
        if not model.tensors:
            tabs.active = "file"
        self._build()

    def _build(self) -> None:
        """The tree of the tensors that match the filter, root and first level expanded."""
        from engine.use import tensortree

        root = tensortree.build(self.model.tensors.values(), pattern=self.pattern or None)
        self.query_one("#summary", Static).update(_summary(self.model, root, self.pattern))
        tree = self.query_one("#tree", Tree)
        tree.reset(Text.assemble(plain(self.model.path.name, "bold"), (f"  {_totals(root)}", "dim")), root)
        self._add_children(tree.root)
        for child in tree.root.children:
            child.expand()
        tree.root.expand()
        tree.move_cursor(tree.root)
        self._select(root)

    def _add_children(self, item: TreeNode[Node]) -> None:
        for child in item.data.children.values():
            if child.children:
                item.add(_label(child), child)
            else:
                item.add_leaf(_label(child), child)

    @on(Tree.NodeExpanded, "#tree")
    def _expanded(self, event: Tree.NodeExpanded) -> None:
        """Add a node's children when it is first opened: a large model's tree grows as it is read."""
        if not event.node.children and event.node.data is not None and event.node.data.children:
            self._add_children(event.node)

    # --- the details --------------------------------------------------------------------

    @on(Tree.NodeHighlighted, "#tree")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None:
            self._select(event.node.data)

    def _select(self, node: Node) -> None:
        """Show ``node``: a module's totals at once, a tensor's statistics from a job."""
        if node is self.shown:
            return
        self.shown = node
        stats = self.query_one("#stats", Static)
        histogram = self.query_one(Histogram)
        histogram.display = node.tensor is not None
        if node.tensor is None:
            self._jobs.pop("stats", None)
            stats.update(_module_text(node))
            return
        stats.update(_stats_text(node, None))
        histogram.show([], [])
        histogram.loading = True
        self._jobs["stats"] = self.compute(node)

    @in_thread("stats")
    def compute(self, node: Node) -> None:
        from engine.use import tensorstats

        try:
            summary = tensorstats.stats(node.tensor)
            found: Any = summary, tensorstats.histogram(node.tensor, found=summary)
        except TorchdeckError as exc:  # values that cannot be read are part of the tensor's story
            found = str(exc)
        answer(self._computed, node, found)

    def _computed(self, node: Node, found: tuple[dict[str, Any], tuple[list[float], list[int]]] | str) -> None:
        if node is not self.shown:  # an answer about a node highlighted before
            return
        histogram = self.query_one(Histogram)
        histogram.loading = False
        if isinstance(found, str):
            histogram.display = False
            self.query_one("#stats", Static).update(_stats_text(node, found))
            return
        self.query_one("#stats", Static).update(_stats_text(node, found[0]))
        histogram.show(*found[1])

    # --- actions ------------------------------------------------------------------------

    def action_filter(self) -> None:
        if self.model is None:
            return

        def apply(pattern: str | None) -> None:
            if pattern is not None:
                self.pattern = pattern
                self.shown = None
                self._build()

        prompt = "Show the tensors whose name matches (a glob such as *.bias, or part of a name; empty: all):"
        self.app.push_screen(AskDialog("filter the tensors", prompt, self.pattern, str), apply)
