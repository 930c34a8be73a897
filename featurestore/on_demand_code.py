"""The code of on-demand feature views: where it lives, what its hash covers, how a store loads it.

A row function is never pickled. Apply records, for each on-demand view:

- `module`: the repo-relative definition file where the repo loader found the view; a store imports
  that file again (afresh, with the repo on `sys.path`, as the loader does) and takes the view of
  that name from it;
- `function_file` / `function` (and the vectorized form's): where each function's `def` is, to read
  its source from the file's text without running anything;
- `sha256` (`code_hash`): the functions' source plus, recursively, what they reach by global name
  (the names of their code and nested code, closure cells and defaults, resolved in the function's
  globals): functions and classes defined in repo files (their source), repo modules (their file's
  text) and plain constants (the repr of int, float, str, bytes, bool and None, and of tuples, lists,
  dicts and sets of those). Library modules and objects from outside the repo are not hashed, nor
  objects of other types (instances, data loaded at import): a change there is served unnoticed;
- `source_sha256` (`own_source_hash`): the functions' own source, read from the files with `ast`.

A store checks its files at most once a second (`FunctionLoader`): when one the view depends on
changed, it first compares `source_sha256` from the text (a mismatch refuses without importing),
then imports the view's file and compares `sha256`. A change to a helper or a constant therefore
runs the changed file's top level once before it is refused (its function is never called).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import itertools
import math
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import DefinitionsChangedError

if TYPE_CHECKING:
    from .on_demand import OnDemandFeatureView

RECHECK_SECONDS = 1.0  # how often a store stats a function's files for changes
_PACKAGE = Path(__file__).resolve().parent  # featurestore itself is never repo code
_IMPORT_LOCK = threading.Lock()  # sys.modules and sys.path are process-wide
_CONSTANTS = (int, float, str, bytes, bool, type(None))


# -- where code lives --------------------------------------------------------------------------------


def in_repo(file: str | Path | None, root: Path) -> bool:
    """Whether `file` is the repo's own code: under `root`, not in a hidden folder, a virtualenv or
    site-packages, and not featurestore itself."""
    if not file:
        return False
    path = Path(file).resolve()
    try:
        parts = path.relative_to(root.resolve()).parts
    except ValueError:
        return False
    if path.is_relative_to(_PACKAGE):
        return False
    return not any(p.startswith(".") or p in ("venv", "site-packages", "node_modules") for p in parts)


def repo_relative(file: str | Path, root: Path) -> str:
    return Path(file).resolve().relative_to(root.resolve()).as_posix()


def function_site(fn: Any, root: Path) -> tuple[str, str] | str:
    """(repo-relative file, qualname) of a plain function defined at a file's top level or in a class
    there, or why a store could not find it again (a problem sentence)."""
    if not isinstance(fn, types.FunctionType):
        return f"{fn!r} is not a plain function (def)"
    file = fn.__code__.co_filename
    if not in_repo(file, root):
        return f"its function '{fn.__qualname__}' is defined outside the repo's files ({file})"
    if "<" in fn.__qualname__:
        return (
            f"its function '{fn.__qualname__}' ({repo_relative(file, root)}) is a lambda or is defined inside "
            "another function: a store finds functions by name, so write it as a def at the top of a file"
        )
    return repo_relative(file, root), fn.__qualname__


def checked_path(root: Path, relative: str, what: str, allowed: Sequence[Path] | None = None) -> Path:
    """`root/relative` when `relative` is a relative path inside the repo (one of `allowed` when given);
    else DefinitionsChangedError, before anything is read or run."""
    ok = bool(relative) and not Path(relative).is_absolute() and relative.endswith(".py")
    path = (root / relative).resolve() if ok else root
    ok = ok and in_repo(path, root)
    if ok and allowed is not None:
        ok = path in {p.resolve() for p in allowed}
    if not ok:
        kind = "a definition file" if allowed is not None else "a Python file"
        raise DefinitionsChangedError(
            f"definitions changed on disk: apply again ({what}: the registry names {relative!r}, which is not "
            f"{kind} of the repo at {root}; refusing to read or run it)"
        )
    return path


# -- hashes ------------------------------------------------------------------------------------------


def _definition_node(tree: ast.Module, qualname: str) -> ast.AST | None:
    body: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    for part in qualname.split("."):
        node = next(
            (
                n
                for n in reversed(body)  # the last definition of a name is the one Python keeps
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part
            ),
            None,
        )
        if node is None:
            return None
        body = node.body
    return node


def source_segment(text: str, qualname: str) -> str | None:
    """The source of the def or class `qualname` in a file's text (None when it has none)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    node = _definition_node(tree, qualname)
    return None if node is None else ast.get_source_segment(text, node)


def own_source_hash(root: Path, sites: Sequence[tuple[str, str]]) -> str | tuple[str, str]:
    """sha256 of the functions' own source read from their files' text (no import), or the
    (file, qualname) that cannot be found."""
    digest = hashlib.sha256()
    for file, qualname in sites:
        try:
            text = checked_path(root, file, "on-demand function").read_text()
        except OSError:
            return file, qualname
        segment = source_segment(text, qualname)
        if segment is None:
            return file, qualname
        digest.update(f"{file}\0{qualname}\0{segment}\0".encode())
    return digest.hexdigest()


class _CodeWalk:
    """What `code_hash` covers, in a fixed order; `files` are the repo files it read."""

    def __init__(self, root: Path):
        self.root = root
        self.digest = hashlib.sha256()
        self.files: set[Path] = set()
        self._seen: set[int] = set()
        self._texts: dict[str, str] = {}

    def _add(self, *parts: str) -> None:
        self.digest.update("\0".join(parts).encode() + b"\1")

    def _text(self, file: str) -> str:
        if file not in self._texts:
            self._texts[file] = Path(file).read_text()
            self.files.add(Path(file).resolve())
        return self._texts[file]

    def function(self, name: str, fn: types.FunctionType) -> None:
        if id(fn) in self._seen:
            return
        self._seen.add(id(fn))
        file = fn.__code__.co_filename
        lines, first = inspect.getsourcelines(fn)
        self._text(file)
        self._add("function", name, "".join(lines))
        for k, cell in enumerate(fn.__closure__ or ()):
            try:
                self.value(f"{name}.<cell {k}>", cell.cell_contents, fn.__globals__)
            except ValueError:  # an empty cell
                continue
        for k, default in enumerate((fn.__defaults__ or ()) + tuple((fn.__kwdefaults__ or {}).values())):
            self.value(f"{name}.<default {k}>", default, fn.__globals__)
        for ref in _global_names(fn.__code__):
            if ref in fn.__globals__:
                self.value(ref, fn.__globals__[ref], fn.__globals__)

    def value(self, name: str, value: Any, namespace: dict[str, Any]) -> None:
        constant = _constant_repr(value)
        if constant is not None:
            self._add("constant", name, constant)
        elif isinstance(value, types.FunctionType):
            if in_repo(value.__code__.co_filename, self.root):
                self.function(name, value)
        elif isinstance(value, types.ModuleType):
            file = getattr(value, "__file__", None)
            if in_repo(file, self.root) and id(value) not in self._seen:
                self._seen.add(id(value))
                assert file is not None
                self._add("module", name, self._text(file))
        elif isinstance(value, type):
            self._class(name, value, namespace)

    def _class(self, name: str, cls: type, namespace: dict[str, Any]) -> None:
        if id(cls) in self._seen:
            return
        module = sys.modules.get(cls.__module__)
        file = getattr(module, "__file__", None)
        if cls.__module__ == namespace.get("__name__"):  # defined in the file that refers to it
            file = namespace.get("__file__")
        if not in_repo(file, self.root):
            return
        self._seen.add(id(cls))
        assert file is not None
        self._add("class", name, source_segment(self._text(file), cls.__qualname__) or cls.__qualname__)
        for attr, member in sorted(vars(cls).items()):
            inner = getattr(member, "__func__", getattr(member, "fget", member))
            if isinstance(inner, types.FunctionType) and in_repo(inner.__code__.co_filename, self.root):
                self.function(f"{name}.{attr}", inner)


def _global_names(code: types.CodeType) -> Iterator[str]:
    """The names a code object and its nested code look up (globals, attributes and imports alike)."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _constant_repr(value: Any) -> str | None:
    if type(value) in _CONSTANTS:
        return repr(value) if not (type(value) is float and math.isnan(value)) else "nan"
    if type(value) in (tuple, list):
        inner = [_constant_repr(v) for v in value]
        return None if None in inner else f"{type(value).__name__}({', '.join(inner)})"  # type: ignore[arg-type]
    if type(value) in (set, frozenset):
        inner = [_constant_repr(v) for v in value]
        return None if None in inner else f"set({', '.join(sorted(inner))})"  # type: ignore[arg-type]
    if type(value) is dict:
        pairs = [(_constant_repr(k), _constant_repr(v)) for k, v in value.items()]
        if any(k is None or v is None for k, v in pairs):
            return None
        return "dict(" + ", ".join(f"{k}: {v}" for k, v in pairs) + ")"
    return None


def code_hash(functions: Sequence[Any], mode: str, root: Path) -> tuple[str, frozenset[Path]]:
    """sha256 of the functions and what they reach by global name (see the module docstring), and
    the repo files that went into it. Computed once the functions' files are fully imported."""
    walk = _CodeWalk(root)
    for k, fn in enumerate(functions):
        if fn is not None:
            walk.function(f"<form {k}>", fn)
    walk._add("mode", mode)
    return walk.digest.hexdigest(), frozenset(walk.files)


# -- importing ---------------------------------------------------------------------------------------


@contextmanager
def fresh_repo_imports(root: Path) -> Iterator[None]:
    """Import repo files afresh: the repo on sys.path, modules of repo files imported before hidden
    (so `import helpers` reads helpers.py as it is now), and sys.modules as it was afterwards."""
    root_s = str(root)
    with _IMPORT_LOCK:
        saved = {n: m for n, m in list(sys.modules.items()) if _repo_module(n, m, root)}
        for n in saved:
            del sys.modules[n]
        before = set(sys.modules)
        added = root_s not in sys.path
        if added:
            sys.path.insert(0, root_s)  # definition files may import each other
        try:
            yield
        finally:
            if added and root_s in sys.path:
                sys.path.remove(root_s)
            for n in set(sys.modules) - before:
                if _repo_module(n, sys.modules[n], root):
                    del sys.modules[n]
            sys.modules.update(saved)


def _repo_module(name: str, module: Any, root: Path) -> bool:
    return name.partition(".")[0] != "featurestore" and in_repo(getattr(module, "__file__", None), root)


_imports = itertools.count()
_D = TypeVar("_D")


def import_definitions(path: Path, root: Path, kind: type[_D]) -> dict[str, _D]:
    """Import a definition file afresh (as the repo loader does): its top-level objects of class
    `kind` (on-demand views, training pipelines) by name."""
    spec = importlib.util.spec_from_file_location(f"_fs_definitions_{next(_imports)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with fresh_repo_imports(root):
        spec.loader.exec_module(module)
    found: dict[str, _D] = {}
    for value in vars(module).values():
        if isinstance(value, kind):
            found.setdefault(getattr(value, "name"), value)  # noqa: B009 - any named definition
    return found


def import_views(path: Path, root: Path) -> dict[str, OnDemandFeatureView]:
    """Import a definition file afresh (as the repo loader does): its top-level on-demand views by name."""
    from .on_demand import OnDemandFeatureView

    return import_definitions(path, root, OnDemandFeatureView)


@dataclass(frozen=True)
class BoundCode:
    """Where a definition's functions are and the hashes apply records (`bind_code`)."""

    sites: list[tuple[str, str]]  # (repo-relative file, qualname) of each function given, in order
    sha256: str  # code_hash
    source_sha256: str  # own_source_hash
    files: frozenset[Path]  # the repo files the hash read, and the definition file


def bind_code(
    obj: Any,
    functions_of: Callable[[Any], Sequence[Any]],
    hash_of: Callable[[Any], tuple[str, frozenset[Path]]],
    module: str,
    root: Path,
    reloaded: dict[str, Any],
    loader: str,
    function_noun: str,
    defines: str,
) -> BoundCode | str:
    """Bind a definition's functions (`functions_of(obj)`, None: absent) to their files and hashes
    (`hash_of(obj)`: its `code_hash` and the files read), or say why `loader` ("a store", "a run") could not load them as applied. `module`: the
    repo-relative definition file `obj` was found in; it is imported once more (cached per file in
    `reloaded`), as the loader imports it, and the object named like `obj` there must hash the same.
    `function_noun` / `defines` word the messages ("its function", "view 'x'")."""
    functions = functions_of(obj)
    sites = []
    for fn in functions:
        if fn is not None:
            site = function_site(fn, root)
            if isinstance(site, str):
                return site
            sites.append(site)
    if not module or not sites:
        return f"{function_noun} must be defined in a file of the repo"
    source = own_source_hash(root, sites)
    if isinstance(source, tuple):
        return f"{loader} looks its function up by name, and {source[0]} has no def '{source[1]}' at its top level"
    digest, files = hash_of(obj)
    path = (root / module).resolve()
    if module not in reloaded:
        try:
            reloaded[module] = import_definitions(path, root, type(obj))
        except Exception as e:  # noqa: BLE001 - the user's file, imported once more
            reloaded[module] = f"{type(e).__name__}: {e}"
    again = reloaded[module]
    if isinstance(again, str):
        return f"{module} fails when imported again, as {loader} imports it to load the function: {again}"
    if obj.name not in again:
        return f"{loader} imports {module} to load it, and {module} imported on its own defines no {defines}"
    if hash_of(again[obj.name])[0] != digest:
        return (
            f"its code hashes differently each time {module} is imported (a value its function uses changes "
            f"from one import to the next?), so {loader} would refuse it: use plain constants"
        )
    return BoundCode(sites, digest, source, files | {path})


def view_code_hash(view: OnDemandFeatureView, root: Path) -> tuple[str, frozenset[Path]]:
    """`code_hash` of a view's row and vectorized forms."""
    return code_hash([view.udf, view.vectorized_udf], view.mode, root)


def view_sites(view: OnDemandFeatureView) -> list[tuple[str, str]]:
    """(file, qualname) of the view's functions as applied."""
    sites = [(view.function_file, view.function)]
    if view.vectorized_function:
        sites.append((view.vectorized_function_file or view.function_file, view.vectorized_function))
    return sites


def signatures(paths: Sequence[Path] | frozenset[Path]) -> dict[Path, tuple[int, int]]:
    """(mtime in ns, size) of each file: what tells a loader that one changed."""
    out = {}
    for p in paths:
        st = p.stat()
        out[p] = (st.st_mtime_ns, st.st_size)
    return out


class FunctionLoader:
    """The functions of one on-demand view, imported from the repo and checked against the applied
    hashes. The files the hash read are stat'ed at most every RECHECK_SECONDS; only when one changed
    is the source checked from the text, then the view's file imported again and its hash compared.
    A view built in this process (a repo just loaded) starts with its functions in memory."""

    def __init__(self, view: OnDemandFeatureView, repo_path: Path):
        self.view = view
        self.repo_path = repo_path
        self._lock = threading.Lock()
        self._row = view.udf
        self._vec = view.vectorized_udf
        self._sigs: dict[Path, tuple[int, int]] | None = (
            getattr(view, "_fs_file_sigs", None) if view.udf else None
        )
        self._checked = time.monotonic() if self._sigs is not None else -math.inf
        self._error: str | None = None

    def check_now(self, imported: dict[Path, dict[str, OnDemandFeatureView]] | None = None) -> None:
        """Check the files at once (not waiting for RECHECK_SECONDS); raises as `functions` does.
        `imported`: definition files already imported by this round of checks, to import each once."""
        with self._lock:
            self._check(imported)
        self.functions()

    def functions(self) -> tuple[Callable[[dict[str, Any]], Any], Callable[[Any], Any] | None]:
        """(row form, vectorized form or None); DefinitionsChangedError when the code no longer matches."""
        if time.monotonic() - self._checked >= RECHECK_SECONDS:
            with self._lock:
                if time.monotonic() - self._checked >= RECHECK_SECONDS:
                    self._check()
        if self._error is not None:
            raise DefinitionsChangedError(self._error)
        assert self._row is not None
        return self._row, self._vec

    def _check(self, imported: dict[Path, dict[str, OnDemandFeatureView]] | None = None) -> None:
        self._checked = time.monotonic()
        if self._sigs is not None and (self._row is not None or self._error is not None):
            try:
                if signatures(list(self._sigs)) == self._sigs:
                    return  # no file changed since the last look: the same answer
            except OSError:
                pass  # a file is gone: look again
        files: frozenset[Path] = frozenset(self._sigs or ())
        try:
            self._error, files = self._load(files, {} if imported is None else imported)
        except DefinitionsChangedError as e:
            self._error = str(e)
        try:  # a refused change is looked at again only when a file changes again
            self._sigs = signatures([p for p in files if p.exists()])
        except OSError:
            self._sigs = None

    def _load(
        self, files: frozenset[Path], imported: dict[Path, dict[str, OnDemandFeatureView]]
    ) -> tuple[str | None, frozenset[Path]]:
        """(None, the files the hash read) when the files match the applied hashes, else (what is
        wrong, the files to watch for the next change)."""
        from .config import load_config
        from .repo import definition_files

        view, root = self.view, self.repo_path
        what = f"definitions changed on disk: apply again (on-demand feature view '{view.name}'"
        path = checked_path(
            root, view.module, f"on-demand feature view '{view.name}'", definition_files(load_config(root))
        )
        sites = view_sites(view)
        files = (
            files
            | {path}
            | {checked_path(root, f, f"on-demand feature view '{view.name}'") for f, _ in sites}
        )
        source = own_source_hash(root, sites)
        if isinstance(source, tuple):
            return f"{what}: {source[0]} no longer defines '{source[1]}')", files
        if source != view.source_sha256:
            return (
                f"{what}: the source of its function '{view.function}' in {view.function_file} differs from the "
                "applied one)"
            ), files
        try:
            if path not in imported:
                imported[path] = import_views(path, root)
            found = imported[path].get(view.name)
        except Exception as e:  # the user's file fails to import now
            return f"{what}: {view.module} no longer imports: {type(e).__name__}: {e})", files
        if found is None or found.udf is None:
            return f"{what}: {view.module} no longer defines it)", files
        digest, used = view_code_hash(found, root)
        if digest != view.sha256:
            return (
                f"{what}: code its function uses (a helper, a constant, a module of the repo) differs from "
                "the applied one)"
            ), files | used
        self._row, self._vec = found.udf, found.vectorized_udf
        return None, used | {path}


def verify_functions(catalog: Any, repo_path: Path) -> None:
    """Load every on-demand view's functions and check them against the applied hashes now (`fs serve`
    refuses to start on a mismatch; the app loads them before its first request): raises
    DefinitionsChangedError naming the first one that differs."""
    imported: dict[Path, dict[str, OnDemandFeatureView]] = {}
    for view in catalog.on_demand.values():
        view.loader(repo_path).check_now(imported)
