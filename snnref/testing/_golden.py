"""Golden traces: float64 spec runs stored as ``.npz`` files with a checksummed manifest.

For every registry model and every surrogate it accepts, a few cases:

- ``default``: registry defaults, zero initial state, T = 8, batch 2;
- ``long``: T = 500, random parameters;
- ``batch``: batch 3, per-neuron parameters, a non-default initial state;
- ``threshold``: the seed (of 64) whose run passes closest to threshold;
- ``inject``: hardware spikes and membrane injected (hxtorch models).

Each file holds the inputs (``in.x``, ``param.*``, ``state.*``, ``cot.*``,
``inject.*``), every output and state sequence (``out.*``), the final state
(``final.*``) and every gradient of ``snnref.spec.vjp`` (``grad.*``).  Files are
written deterministically (sorted members, fixed zip timestamps, no
compression: the same bytes on every run with the same NumPy major version)
and atomically (a temporary file renamed into place); the manifest, with each
file's sha256, shapes, seed and parameters, is written last.  A whole store is
generated into a staging directory beside the target and swapped in at the
end (``snnref._files.replace_directory``: in one step where the system can),
so an interrupted run leaves the old store as it was, or the new one whole
when the swap had happened.  Files are read
with ``allow_pickle=False``.

``write_store`` is the one writer of every store: the built-in one above and
the stores generated from a user's case file (``snnref.testing.golden_cases``,
whose manifests also hold the case file's sha256).  ``diff`` compares two
stores file by file and quantity by quantity (exactly, not within a budget):
for each changed quantity, its first differing element (and step: the first
axis of the quantities recorded per step) and its largest absolute difference.

The repository's ``golden/`` is the committed source of truth; the wheel
installs the same files as the package data ``snnref.goldens`` (pyproject.toml
maps that package onto ``golden/``: one copy), found with
``importlib.resources`` from any working directory (``store_dir``).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import __version__, arguments, registry, spec
from .._files import can_create_in, numpy_format, read_regular_file, replace_directory, usual_mode, write_atomically
from ..arguments import Names
from . import _checks as checks

MANIFEST = "MANIFEST.json"
# Where ``snnref golden generate`` writes by default: the repository's golden/
# (run from the repository root, or pass --out).
DEFAULT_DIR = Path("golden")
# The installed copy of golden/ (package data).
PACKAGE = "snnref.goldens"
# The float64 spec must reproduce its goldens to within 4 ulp of each quantity's
# scale (bit-for-bit on the machine that wrote them; the slack is for another
# platform's libm, exp and atan among them).
SPEC_ULPS = 4
FORMAT = 1
# What a golden file holds (``record``): inputs, outputs, final states, gradients.
QUANTITY_PREFIXES = ("in.", "param.", "state.", "cot.", "inject.", "out.", "final.", "grad.")


class GoldenError(Exception):
    """A golden store that cannot be trusted: the message names the file and the problem."""


class OutputRefused(GoldenError):
    """``--out`` names a directory that generating must not replace: a usage error (exit 2)."""


class NotAStore(GoldenError):
    """The path given as a store is none (no such directory, a file, no manifest): a usage
    error (exit 2), not a store whose goldens fail (exit 1)."""


@dataclass(frozen=True)
class CaseSpec:
    name: str
    steps: int
    batch: int
    neurons: int
    per_neuron: bool = False
    random_state: bool = False
    random_params: bool = True
    inject: bool = False


CASES = (
    CaseSpec("default", 8, 2, 3, random_params=False),
    CaseSpec("long", 500, 1, 2),
    CaseSpec("batch", 12, 3, 4, per_neuron=True, random_state=True),
    CaseSpec("threshold", 24, 2, 3),
)
INJECT_CASE = CaseSpec("inject", 16, 2, 3, inject=True, random_state=True)


def cases_for(row) -> List[CaseSpec]:
    return list(CASES) + ([INJECT_CASE] if row.inject else [])


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def _case(row, surrogate, plan: CaseSpec, seed: int) -> checks.Case:
    rng = np.random.default_rng(seed)
    case = checks.random_case(row.key, rng, steps=plan.steps, batch=plan.batch, neurons=plan.neurons,
                              surrogate=surrogate, per_neuron=plan.per_neuron,
                              random_state=plan.random_state, inject=plan.inject)
    if not plan.random_params:
        # Registry defaults; required parameters (attention weights) stay drawn.
        case.params = {k: v for k, v in case.params.items() if row.param(k).default is None}
    return case


def _closest_to_threshold(row, surrogate, plan):
    """The seed among 64 whose smallest |distance to threshold| is smallest."""
    best = None
    for index in range(64):
        seed = _seed(row.key, surrogate, plan.name, index)
        case = _case(row, surrogate, plan, seed)
        trace = spec.simulate(row.key, case.x, case.params, case.state, surrogate=surrogate, inject=case.inject)
        if trace.distance is None:
            return seed, None
        margin = float(np.min(np.abs(trace.distance)))
        if best is None or margin < best[1]:
            best = (seed, margin)
    return best


def build(row, surrogate, plan: CaseSpec):
    """The arrays of one golden case and its manifest entry (without the checksum)."""
    margin = None
    if plan.name == "threshold":
        seed, margin = _closest_to_threshold(row, surrogate, plan)
    else:
        seed = _seed(row.key, surrogate, plan.name)
    case = _case(row, surrogate, plan, seed)
    arrays = record(case)
    entry = entry_for(case, arrays, plan.name, seed)
    if margin is not None:
        entry["min_distance_to_threshold"] = margin
    return arrays, entry


def record(case: checks.Case) -> Dict[str, np.ndarray]:
    """One case's inputs and its float64 spec results, keyed as the store keeps them."""
    kwargs = dict(surrogate=case.surrogate, inject=case.inject)
    trace = spec.simulate(case.model, case.x, case.params, case.state, **kwargs)
    grads = spec.vjp(case.model, case.x, case.params, case.state, case.cotangents, **kwargs)
    arrays = {"in.x": case.x}
    arrays.update({f"param.{k}": np.asarray(v) for k, v in case.params.items()})
    arrays.update({f"state.{k}": v for k, v in case.state.items()})
    arrays.update({f"cot.{k}": v for k, v in case.cotangents.items()})
    arrays.update({f"inject.{k}": v for k, v in (case.inject or {}).items()})
    arrays.update({f"out.{k}": v for k, v in trace.outputs.items()})
    arrays.update({f"final.{k}": v for k, v in trace.final_state.items()})
    arrays.update({f"grad.{k}": v for k, v in grads.items()})
    return arrays


def entry_for(case: checks.Case, arrays: Dict[str, np.ndarray], label: str, seed: int) -> dict:
    """The manifest entry of one file, without its checksum (small parameters are listed)."""
    return {
        "model": case.model, "surrogate": case.surrogate, "case": label, "seed": seed,
        "params": {k: np.asarray(v).tolist() for k, v in case.params.items() if np.asarray(v).size <= 8},
        "shapes": {k: list(np.shape(v)) for k, v in sorted(arrays.items())},
    }


def file_name(row, surrogate, plan) -> str:
    stem = row.key.replace(".", "_")
    return f"{row.family}/{stem}-{surrogate or 'none'}-{plan.name}.npz"


def pack(arrays: Dict[str, np.ndarray]) -> bytes:
    """An .npz readable by numpy.load, the same bytes for the same arrays."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name], dtype=np.float64, order="C"),
                                      allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buffer.getvalue()


def unlisted_files(directory: Path, manifest: dict) -> List[str]:
    """The files under ``directory`` that neither are its manifest nor listed in it."""
    listed = set(manifest["files"]) | {MANIFEST}
    return sorted(name for name in (path.relative_to(directory).as_posix()
                                    for path in Path(directory).rglob("*") if not path.is_dir())
                  if name not in listed)


def _check_writable(directory: Path, label) -> None:
    """``directory`` can become a store: a store already (a valid manifest that
    lists every file in it), empty, or new below a writable directory.
    Checked without writing anything in it: a store is replaced whole, so a
    directory holding anything else is refused rather than swept away.
    ``label`` is how the user named it."""
    here = Path.cwd().resolve()
    if directory == here or directory in here.parents:
        raise OutputRefused(f"--out {label}: is the current directory or holds it; generating replaces the whole "
                          "directory, so run it from outside")
    if directory.exists() and not directory.is_dir():
        raise OutputRefused(f"--out {label}: not a writable directory ({directory} is not one)")
    # The store is built beside itself and swapped in: the nearest existing folder above it must take
    # new files, tried with a probe file there, never inside a store another process may be reading.
    existing = directory.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not can_create_in(existing):
        raise OutputRefused(f"--out {label}: not a writable directory ({existing} is not one)")
    if not directory.exists() or not any(directory.iterdir()):
        return
    replaces = "generating replaces the whole directory, so name a new or empty one"
    try:
        manifest = read_manifest(directory)
    except GoldenError as error:
        raise OutputRefused(f"--out {label}: holds files but is not a golden store ({error}); {replaces}") from None
    unlisted = unlisted_files(directory, manifest)
    if unlisted:
        more = f" and {len(unlisted) - 1} more" if len(unlisted) > 1 else ""
        raise OutputRefused(f"--out {label}: holds {unlisted[0]}{more}, which its {MANIFEST} does not list; "
                          f"{replaces}")


def generate(directory: Path = DEFAULT_DIR, models: Optional[List[str]] = None, progress=None) -> dict:
    """Write the store (or the given models' part of it) and its manifest."""
    directory = Path(directory)
    keys = models or sorted(registry.MODELS)
    kept = {}
    if models and (directory / MANIFEST).exists():
        # A manifest that does not read is refused as an --out, not as a damaged store.
        _check_writable(directory.resolve(), directory)
        manifest = read_manifest(directory)
        if manifest.get("cases"):
            # Its manifest records the case file its goldens came from; built-in cases would break that record.
            raise OutputRefused(f"--out {directory}: holds goldens generated from the case file "
                              f"{manifest['cases'].get('file')!r}; regenerate it with --cases, or write the "
                              "built-in cases to another directory")
        kept = {k: v for k, v in manifest["files"].items() if v["model"] not in keys}
    jobs = [(file_name(row, surrogate, plan), functools.partial(build, row, surrogate, plan),
             f"{row.key} {surrogate or ''} {plan.name}")
            for row in map(registry.model, keys) for surrogate in row.surrogates or (None,)
            for plan in cases_for(row)]
    return write_store(directory, jobs, kept=kept, progress=progress)


def write_store(directory: Path, jobs, *, kept=None, extra=None, progress=None) -> dict:
    """Write a store: each job ``(file name, make, description)``, ``make()`` returning
    (arrays, manifest entry without checksum); ``kept``: entries of ``directory``'s
    current manifest whose files are carried over unchanged; ``extra``: more
    top-level manifest fields.  The one writer of every store (built-in or from a
    case file): packed deterministically, checksummed, written into a staging
    directory beside ``directory`` and swapped in when complete, so that an error
    or an interruption leaves ``directory`` as it was (or, after the swap, the
    new store whole) and nothing else behind."""
    label = directory
    # Through a symbolic link to the store it names: the link stays, the store behind it is replaced.
    directory = Path(directory).resolve()
    _check_writable(directory, label)
    entries = dict(kept or {})
    created = [p for p in directory.parents if not p.exists()]
    directory.parent.mkdir(parents=True, exist_ok=True)
    # Everything goes to a staging directory beside the store, swapped in when complete:
    # an interrupted run never leaves new files under the old manifest.
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.staging-"))
    os.chmod(staging, usual_mode(directory=True))
    try:
        for name, entry in entries.items():
            # Carried over only as the manifest lists it: a missing or altered file is an error
            # now, not a store that the next check fails.
            load(directory, name, entry)
            write_atomically(staging / name, (directory / name).read_bytes())
        for name, make, description in jobs:
            if progress:
                progress(description)
            arrays, entry = make()
            data = pack(arrays)
            write_atomically(staging / name, data)
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            entries[name] = entry
        manifest = {"format": FORMAT, "snnref": __version__, "numpy": np.__version__, **(extra or {}),
                    "files": dict(sorted(entries.items()))}
        write_atomically(staging / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
        replace_directory(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in created:  # innermost first: the directories this run made
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    return manifest


def store_dir(directory=None) -> Path:
    """The golden store to read: ``directory`` when given, else the installed package
    data (``snnref.goldens``), else the repository's golden/ beside the package (an
    editable install made before the package data existed)."""
    if directory is not None:
        return Path(directory)
    import importlib.resources

    try:
        packaged = importlib.resources.files(PACKAGE)
        if packaged.joinpath(MANIFEST).is_file():
            # A directory on disk (a namespace package's reader joins its paths: take the first).
            return Path(str(getattr(packaged, "_paths", [packaged])[0]))
    except (ModuleNotFoundError, TypeError):
        pass
    repository = Path(__file__).resolve().parents[2] / "golden"
    if (repository / MANIFEST).is_file():
        return repository
    raise GoldenError(f"no golden store installed (package data {PACKAGE} is missing); "
                      "pass golden_dir= / --golden-dir, or leave the goldens out")


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if path.is_symlink() or (path.exists() and not path.is_dir() and not path.is_file()):
        raise GoldenError(f"{path}: is a symbolic link or a special file, not a manifest (a store holds plain files)")
    try:
        manifest = json.loads(path.read_text(), object_pairs_hook=_without_repeated_keys)
    except FileNotFoundError:
        if not Path(directory).exists():
            raise NotAStore(f"{directory}: no such directory (expected a golden store)") from None
        raise NotAStore(f"{path}: missing manifest") from None
    except IsADirectoryError:
        raise NotAStore(f"{path}: is a directory, not a manifest") from None
    except NotADirectoryError:
        raise NotAStore(f"{directory}: is a file, not a golden store (a directory)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise GoldenError(f"{path}: not a valid manifest ({error})") from None
    except RecursionError:
        raise GoldenError(f"{path}: not a valid manifest (nested too deeply to read)") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise GoldenError(f"{path}: not a valid manifest (no 'files' table)")
    if manifest.get("format") != FORMAT:
        raise GoldenError(f"{path}: format {manifest.get('format')!r} is not one this snnref reads "
                          f"(expected {FORMAT})")
    if not manifest["files"]:
        raise GoldenError(f"{path}: lists no golden files")
    for name, entry in manifest["files"].items():
        # A name is a relative path below the store: one that leaves it (absolute, "..")
        # would have check pass a file the store does not hold, and generate write beside it.
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name or "\x00" in name:
            raise GoldenError(f"{path}: the entry {name!r} is not a path inside the store (expected a relative "
                              "path with '/' and no '..')")
        if not isinstance(entry, dict):
            raise GoldenError(f"{path}: the entry {name!r} is not a table (got {type(entry).__name__})")
        if entry.get("model") not in registry.MODELS:
            raise GoldenError(f"{path}: {name} names an unknown model {entry.get('model')!r}")
        missing = [k for k in ("surrogate", "case", "sha256", "shapes") if k not in entry]
        if missing:
            raise GoldenError(f"{path}: the entry {name!r} lacks {', '.join(missing)}")
        # Read by the gate as a run's seed and label: "zero" or NaN failed there, outside any message.
        seed = entry.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise GoldenError(f"{path}: the entry {name!r} has seed {seed!r}; expected an integer from 0 to 2^63 - 1")
        if not isinstance(entry["case"], str):
            raise GoldenError(f"{path}: the entry {name!r} has case {entry['case']!r}; expected a name")
        if (Path(directory) / name).is_dir() and not (Path(directory) / name).is_symlink():
            raise GoldenError(f"{path}: the entry {name!r} names a directory, not a file")
    return manifest


def _without_repeated_keys(pairs):
    """A JSON object as a dict, refusing a key given twice (JSON keeps the last silently:
    an entry written twice would be read as its second copy alone)."""
    table = {}
    for key, value in pairs:
        if key in table:
            raise GoldenError(f"{MANIFEST}: not a valid manifest (the key {key!r} appears twice in one table)")
        table[key] = value
    return table


def _read_plain_file(directory: Path, name: str) -> bytes:
    """The bytes of listed file ``name``: a regular file reached through no symbolic
    link.  A store comes from elsewhere: a link in it read any file outside it (the
    manifest's paths are refused if they leave the store, a link went around that),
    a link to /dev/zero read until memory ran out, and a FIFO waited forever."""
    path = Path(directory)
    for part in PurePosixPath(name).parts:
        path = path / part
        if path.is_symlink():
            where = "is" if path == Path(directory) / name else f"lies under {path}, which is"
            raise GoldenError(f"{name}: {where} a symbolic link; a golden store holds plain files only")
    try:
        return read_regular_file(path, follow_links=False)
    except FileNotFoundError:
        raise GoldenError(f"{name}: missing") from None
    except IsADirectoryError:
        raise GoldenError(f"{name}: is a directory, not a golden file") from None
    except OSError as error:
        raise GoldenError(f"{name}: is {error.strerror}; a golden store holds plain files only") from None


def _declared_arrays(name: str, data: bytes, entry: dict) -> None:
    """Each member's shape and dtype as its .npy header declares them, checked against
    the manifest and the member's size before any array is read: a 10 KB member
    declaring 10^11 values was allocated (745 GiB) before its shape was compared."""
    shapes = entry.get("shapes")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                key = info.filename.removesuffix(".npy")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in ((1, 0), (2, 0)):
                        raise GoldenError(f"{name}: {key} is in .npy format {version}, which snnref does not write")
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(member, max_header_size=10_000)
                    offset = member.tell()
                if dtype.hasobject:
                    raise GoldenError(f"{name}: holds an object array, which is refused ({key})")
                if isinstance(shapes, dict) and key in shapes and list(shape) != shapes[key]:
                    raise GoldenError(f"{name}: its arrays do not match the manifest's shapes ({key} has shape "
                                      f"{list(shape)}, the manifest lists {shapes[key]})")
                if offset + math.prod(shape) * dtype.itemsize != info.file_size:
                    raise GoldenError(f"{name}: {key} declares {math.prod(shape)} values of {dtype} but holds "
                                      f"{info.file_size - offset} bytes of data")
    except ValueError as error:
        raise GoldenError(f"{name}: a member is unreadable ({error})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise GoldenError(f"{name}: not a readable .npz ({error})") from None


def load(directory: Path, name: str, entry: dict) -> Dict[str, np.ndarray]:
    """The arrays of one golden file, after its checksum (never unpickling anything)."""
    data = _read_plain_file(directory, name)
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise GoldenError(f"{name}: sha256 does not match the manifest (tampered or truncated)")
    if numpy_format(data) != ".npz":
        raise GoldenError(f"{name}: not a .npz archive (its first bytes are no zip archive's)")
    _declared_arrays(name, data, entry)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as error:
        # NumPy raises ValueError both for a pickled (object) array and for a damaged member.
        what = "holds an object array, which is refused" if "allow_pickle" in str(error) else "a member is unreadable"
        raise GoldenError(f"{name}: {what} ({error})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise GoldenError(f"{name}: not a readable .npz ({error})") from None
    except MemoryError:
        raise GoldenError(f"{name}: its arrays are too large to load here") from None
    # The writers store float64 only: another dtype is a file made or edited elsewhere.
    other = next((k for k, v in sorted(arrays.items()) if v.dtype != np.float64), None)
    if other is not None:
        raise GoldenError(f"{name}: {other} is {arrays[other].dtype}, expected float64 (a golden holds float64 only)")
    shapes = {k: list(v.shape) for k, v in arrays.items()}
    listed = entry.get("shapes")
    if shapes != listed:
        listed = listed if isinstance(listed, dict) else {}
        differences = ([f"{key} is not listed" for key in sorted(set(shapes) - set(listed))]
                       + [f"{key} is listed but absent" for key in sorted(set(listed) - set(shapes))])
        raise GoldenError(f"{name}: its arrays do not match the manifest's shapes "
                          f"({', '.join(differences) or 'the manifest has no shapes table'})")
    strays = [k for k in arrays if not k.startswith(QUANTITY_PREFIXES)]
    if strays:
        raise GoldenError(f"{name}: holds {strays[0]!r}, which is no golden quantity (expected names starting "
                          f"with {', '.join(QUANTITY_PREFIXES)})")
    if "in.x" not in arrays:
        raise GoldenError(f"{name}: lacks the input in.x")
    _check_listed_params(name, entry, arrays)
    return arrays


def _check_listed_params(name, entry, arrays):
    """The parameters the manifest lists (``entry_for``: the small ones, for
    readers) are the file's: the checksum covers the file, not the manifest."""
    listed = entry.get("params", {})
    if not isinstance(listed, dict):
        raise GoldenError(f"{name}: the manifest's params is not a table (got {type(listed).__name__})")
    for key, value in listed.items():
        stored = arrays.get(f"param.{key}")
        try:
            same = stored is not None and np.array_equal(np.asarray(value, dtype=np.float64), stored)
        except (TypeError, ValueError):
            same = False
        if not same:
            held = "no such parameter" if stored is None else stored.tolist()
            raise GoldenError(f"{name}: the manifest lists params.{key} = {value!r}, the file holds {held}")


def case_from(arrays: Dict[str, np.ndarray], entry: dict) -> checks.Case:
    """The inputs of a golden file as a Case, ready for any backend."""
    def part(prefix):
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    inject = part("inject.") or None
    return checks.Case(entry["model"], entry["surrogate"], arrays["in.x"], part("param."), part("state."),
                       part("cot."), inject, label=entry["case"])


def argument_error(case: checks.Case, dtype=np.float64) -> Optional[str]:
    """What the spec's argument checks (finite, shaped, in the domain, an accepted
    surrogate) refuse in ``case`` run in ``dtype``, or None; nothing is computed.
    A stored or listed case has no ``allow_nonfinite``, so no message suggests it."""
    from ..spec.api import _prepare

    try:
        _prepare(case.model, case.x, case.params, case.state, case.surrogate, False, case.inject,
                 dtype, False, names=Names(allow_nonfinite=False))
        # The cotangents too, which only vjp would check (with its allow_nonfinite hint).
        for key, value in case.cotangents.items():
            label = f"cotangents[{key!r}]"
            if not np.all(np.isfinite(arguments.real_array(label, value))):
                raise arguments.nonfinite_error(label, opt_in=False)
    except (ValueError, TypeError) as error:
        return str(error)
    return None


def check_case(case: checks.Case, name: str) -> None:
    """The stored inputs pass the spec's argument checks; otherwise a GoldenError names the file."""
    error = argument_error(case)
    if error is not None:
        raise GoldenError(f"{name}: {error}")


def expected_from(arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The stored results keyed like ``snnref.testing._equivalence`` (out:, final:, grad:)."""
    names = {"out.": "out:", "final.": "final:", "grad.": "grad:"}
    return {names[prefix] + k[len(prefix):]: v for k, v in arrays.items()
            for prefix in names if k.startswith(prefix)}


@dataclass
class CheckResult:
    name: str
    backend: str
    passed: bool
    detail: str


def spec_rerun(case, expected, name):
    """Re-run the float64 spec: (worst error in ulps of each quantity's scale,
    bit-for-bit, the quantity of the worst).  A quantity whose stored or
    computed values are not all finite is off by an infinite number of ulps (a
    NaN would drop out of any maximum, and so pass)."""
    kwargs = dict(surrogate=case.surrogate, inject=case.inject)
    try:
        trace = spec.simulate(case.model, case.x, case.params, case.state, **kwargs)
        grads = spec.vjp(case.model, case.x, case.params, case.state, case.cotangents, **kwargs)
    except (ValueError, TypeError) as error:
        # Arrays that agree with the manifest but not with each other (a cotangent shorter than
        # its output): the spec's refusal, said of this file (it named no file, exit 2).
        raise GoldenError(f"{name}: {error}") from None
    fresh = {f"out:{k}": v for k, v in trace.outputs.items()}
    fresh.update({f"final:{k}": v for k, v in trace.final_state.items()})
    fresh.update({f"grad:{k}": v for k, v in grads.items()})
    if set(fresh) != set(expected):
        raise GoldenError(f"{name}: quantities differ: stored {sorted(expected)}, computed {sorted(fresh)}")
    worst, identical, where = 0.0, True, None
    for key, value in sorted(expected.items()):
        computed = np.asarray(fresh[key], dtype=np.float64)
        if computed.shape != value.shape:
            raise GoldenError(f"{name}: {key} has shape {list(value.shape)}, the spec computes "
                              f"{list(computed.shape)}")
        identical &= np.array_equal(computed, value)
        if not (np.all(np.isfinite(value)) and np.all(np.isfinite(computed))):
            error = math.inf
        else:
            ulp = np.spacing(max(1.0, float(np.max(np.abs(value), initial=0.0))))
            error = float(np.max(np.abs(computed - value), initial=0.0)) / ulp
        if error > worst or where is None:
            worst, where = max(worst, error), key
    return worst, identical, where


def stray_spike(case, expected):
    """The first stored spike that is neither 0 nor 1 (0 nor theta, qualia.ATIF's
    scaled spike), or None: the spec's 4-ulp allowance must not pass a spike of
    1 - 2^-52, nor then a backend forced to it."""
    row = registry.model(case.model)
    if not row.out.spiking or "out:out" not in expected:
        return None
    out = expected["out:out"]
    allowed = (out == 0) | (out == 1)
    if row.out is registry.Output.SCALED_SPIKES:
        theta = case.params.get("threshold", row.param("threshold").default)
        allowed = (out == 0) | (out == np.broadcast_to(np.asarray(theta, dtype=np.float64), out.shape))
    strays = out[~allowed]
    return float(strays.flat[0]) if strays.size else None


def nonfinite_result(expected):
    """The first stored result (out, final, grad) holding NaN or inf, or None: a
    golden is finite (the writers refuse a run that overflows), and a reference
    that is not finite gives no budget, so a backend's check would skip it."""
    return next((key for key, value in sorted(expected.items()) if not np.all(np.isfinite(value))), None)


def damage(case, expected) -> List[str]:
    """What makes a loaded golden's stored results no golden, each said once: a
    spike that is not 0 or 1, a NaN or inf.  ``check`` and the gate both refuse them
    (the gate passed such a store: the NaN read as "the spec's run is not finite")."""
    found = []
    stray = stray_spike(case, expected)
    if stray is not None:
        found.append(f"out:out holds the spike value {stray!r}: a stored spike is exactly 0 or 1 (SPEC.md section 7)")
    nonfinite = nonfinite_result(expected)
    if nonfinite is not None:
        found.append(f"{nonfinite} holds NaN or inf: a golden result is finite")
    return found


def reason(error, name: str) -> str:
    """A file's error without the file's name in front (the result that reports it names the file)."""
    return str(error).removeprefix(f"{name}: ")


def rerun_dtypes(backend: str) -> Tuple[str, ...]:
    """The dtypes ``check`` re-runs a golden in on ``backend``: one result each."""
    if backend == "spec":
        return ("float64",)
    return ("float64", "float32") if backend in ("torch", "cpu") else ("float32",)


def check(directory=None, backends=("spec",), progress=None) -> List[CheckResult]:
    """Verify every file's checksum and that the store holds no file its
    manifest does not list, then re-run each case on each backend
    (``directory``: default the installed store, ``store_dir``).  A file that
    cannot be loaded is a failed result of backend "store"; a manifest that
    cannot be read raises ``GoldenError`` (``NotAStore`` where there is none)."""
    directory = store_dir(directory)
    manifest = read_manifest(directory)
    results = [CheckResult(name, "store", False, f"not listed in {MANIFEST} (a stray or an unrecorded golden)")
               for name in unlisted_files(directory, manifest)]
    for name, entry in manifest["files"].items():
        # A file that cannot be loaded fails by name and the others still run: a store
        # received with two damaged files says which two (it stopped at the first).
        try:
            arrays = load(directory, name, entry)
            case, expected = case_from(arrays, entry), expected_from(arrays)
            check_case(case, name)
        except GoldenError as error:
            results.append(CheckResult(name, "store", False, reason(error, name)))
            continue
        results += [CheckResult(name, "store", False, found) for found in damage(case, expected)]
        for backend in backends:
            if progress:
                progress(f"{name} ({backend})")
            if backend == "spec":
                try:
                    worst, identical, where = spec_rerun(case, expected, name)
                except GoldenError as error:
                    results.append(CheckResult(name, backend, False, reason(error, name)))
                    continue
                passed = worst <= SPEC_ULPS
                verdict = ("bit-for-bit" if identical else f"{'within' if passed else 'off by'} {worst:.1f} ulp "
                           f"(allowed {SPEC_ULPS}; worst: {where})")
                results.append(CheckResult(name, backend, passed, verdict))
                continue
            import torch

            from . import _equivalence as equivalence

            device = equivalence.kernel_device() if backend == "triton" else "cpu"
            for dtype in (getattr(torch, dtype_name) for dtype_name in rerun_dtypes(backend)):
                try:
                    report = equivalence.compare(case, backend, dtype, device, reference=expected)
                except (equivalence.NoBudget, equivalence.BeyondDtype) as error:
                    # The case is beyond the budget's float32 reference, or beyond the dtype itself.
                    results.append(CheckResult(name, backend, False, f"{str(dtype).replace('torch.', '')}: {error}"))
                    continue
                except (ValueError, OverflowError) as error:
                    # A case finite in float64 that the backend refuses in this dtype (a time
                    # constant of 1e-300 is 0 in float32): a failure of this file, by name.
                    results.append(CheckResult(name, backend, False, f"{str(dtype).replace('torch.', '')}: not "
                                                                     f"run: {error}"))
                    continue
                detail = f"{report.dtype}: worst {report.worst:.2f} of budget" + (
                    f"; {report.failures[0]}" if report.failures else "")
                results.append(CheckResult(name, backend, report.passed, detail))
    return results


def has_time_axis(key: str) -> bool:
    """Whether a stored quantity's first axis is the time step: the input and its
    gradient, injected traces, recorded outputs and their cotangents (not the
    parameters, initial and final states, their gradients and cotangents)."""
    if key.startswith("cot."):
        return not key.startswith("cot.final.")
    return key in ("in.x", "grad.x") or key.startswith(("inject.", "out."))


@dataclass
class QuantityChange:
    key: str
    change: str  # "added", "removed", "shape", "values"
    detail: str


@dataclass
class FileChange:
    name: str
    change: str  # "added", "removed", "changed", "unlisted" (a file its store's manifest does not list)
    notes: List[str]
    quantities: List[QuantityChange]


@dataclass
class StoreDiff:
    notes: List[str]  # differences of the stores themselves (format, models, case file, versions)
    files: List[FileChange]
    compared: int  # files present in both
    comparable: bool = True  # False: different formats, no trace compared

    @property
    def identical(self) -> bool:
        return self.comparable and not self.files


def _format_of(directory: Path):
    """The manifest's declared format, read without judging the rest."""
    try:
        return json.loads((Path(directory) / MANIFEST).read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None  # read_manifest names the problem


# A quantity without a time axis of at most this many values shows them in a diff.
SHOWN_VALUES = 8


def quantity_change(key: str, before: np.ndarray, after: np.ndarray) -> Optional[QuantityChange]:
    """How one stored array changed: None when identical; else its first differing
    element (at its step, for quantities with a time axis) and the largest
    absolute difference, each with where; a small one without a time axis
    (``SHOWN_VALUES``), its values before and after."""
    if before.shape != after.shape:
        return QuantityChange(key, "shape", f"shape {list(before.shape)} -> {list(after.shape)}")
    differs = before != after
    if not differs.any():
        return None
    difference = np.abs(after - before)
    where = np.unravel_index(int(np.argmax(difference)), difference.shape)
    largest = f"largest difference {float(difference[where]):.6g} at {tuple(int(i) for i in where)}"
    if has_time_axis(key):
        # The first in time order, then in the step's own order: where a divergence starts.
        first = tuple(int(i) for i in np.argwhere(differs)[0])
        return QuantityChange(key, "values", f"first differing step {first[0]} at {first}, {largest}")
    if before.size <= SHOWN_VALUES:
        # A parameter or an initial state: the values themselves say what changed (45.178 -> 67.767),
        # which the largest difference alone did not.
        return QuantityChange(key, "values", f"{before.tolist()} -> {after.tolist()}")
    return QuantityChange(key, "values", f"no time axis, {largest}")


def _load_all(stores_and_files):
    """Every listed file of each store, loaded: {(store, name): arrays}.  The files that cannot be
    loaded are one GoldenError naming each with its store (two stores hold the same names); it named
    the first alone."""
    loaded, damaged = {}, []
    for store, files in stores_and_files:
        for name, entry in files.items():
            try:
                loaded[store, name] = load(store, name, entry)
            except GoldenError as error:
                damaged.append(f"{store}: {error}")
    if damaged:
        raise GoldenError("; ".join(damaged))
    return loaded


def diff(first, second) -> StoreDiff:
    """Which golden files differ between two stores, and how each quantity changed.
    Every listed file of both stores is loaded and checked first (a damaged one is an error naming
    each); stores of different formats are not compared."""
    first, second = Path(first), Path(second)
    formats = _format_of(first), _format_of(second)
    if formats[0] != formats[1] and None not in formats:
        return StoreDiff([f"different formats: {first} is format {formats[0]!r}, {second} is format "
                          f"{formats[1]!r}; their traces are not compared"], [], 0, comparable=False)
    manifests = read_manifest(first), read_manifest(second)
    notes = []
    models = [{e["model"] for e in m["files"].values()} for m in manifests]
    if models[0] != models[1]:
        notes.append(f"different models: only in {first}: {', '.join(sorted(models[0] - models[1])) or 'none'}; "
                     f"only in {second}: {', '.join(sorted(models[1] - models[0])) or 'none'}")
    notes += _case_file_notes(*(m.get("cases") or {} for m in manifests))
    for field_name in ("snnref", "numpy"):
        values = [m.get(field_name) for m in manifests]
        if values[0] != values[1]:
            notes.append(f"written by {field_name} {values[0]} -> {values[1]}")
    files_a, files_b = manifests[0]["files"], manifests[1]["files"]
    # A file a manifest does not list is no part of that store's record: said, never compared.
    changes = [FileChange(n, "unlisted", [f"in {store}, not in its {MANIFEST}"], [])
               for store, manifest in zip((first, second), manifests) for n in unlisted_files(store, manifest)]
    changes += [FileChange(n, "removed", [], []) for n in sorted(set(files_a) - set(files_b))]
    changes += [FileChange(n, "added", [], []) for n in sorted(set(files_b) - set(files_a))]
    common = sorted(set(files_a) & set(files_b))
    loaded = _load_all(((first, files_a), (second, files_b)))
    for name in common:
        entry_a, entry_b = files_a[name], files_b[name]
        arrays_a, arrays_b = loaded[first, name], loaded[second, name]
        notes_here = [f"{k}: {json.dumps(entry_a.get(k))} -> {json.dumps(entry_b.get(k))}"
                      for k in sorted(set(entry_a) | set(entry_b))
                      if k not in ("sha256", "shapes", "params") and entry_a.get(k) != entry_b.get(k)]
        quantities = [QuantityChange(k, "removed", "") for k in sorted(set(arrays_a) - set(arrays_b))]
        quantities += [QuantityChange(k, "added", "") for k in sorted(set(arrays_b) - set(arrays_a))]
        for key in sorted(set(arrays_a) & set(arrays_b)):
            change = quantity_change(key, arrays_a[key], arrays_b[key])
            if change is not None:
                quantities.append(change)
        if notes_here or quantities:
            changes.append(FileChange(name, "changed", notes_here, quantities))
    return StoreDiff(notes, sorted(changes, key=lambda c: c.name), len(common))


def _case_file_notes(before: dict, after: dict) -> List[str]:
    """How the case files (and the .npy inputs they read) of two stores differ."""
    if before == after:
        return []
    if not before or not after:
        return [f"case file: {before.get('file', 'none (the built-in cases)')} -> "
                f"{after.get('file', 'none (the built-in cases)')}"]
    notes = []
    if before.get("sha256") != after.get("sha256") or before.get("file") != after.get("file"):
        notes.append(f"case file: {before.get('file')} (sha256 {str(before.get('sha256'))[:12]}) -> "
                     f"{after.get('file')} (sha256 {str(after.get('sha256'))[:12]})")
    inputs = before.get("inputs", {}), after.get("inputs", {})
    for name in sorted(set(inputs[0]) | set(inputs[1])):
        if inputs[0].get(name) != inputs[1].get(name):
            change = "added" if name not in inputs[0] else "removed" if name not in inputs[1] else "changed"
            notes.append(f"case input {name}: {change}")
    return notes
