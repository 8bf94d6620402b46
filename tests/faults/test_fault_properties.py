"""Property tests (hypothesis): the rules that must hold for every input, not just examples.

* The YAML policy never accepts a document that makes pyoco import a callable outside the
  allow-list or read an environment variable that is not both exposed and allowed. What pyoco
  would import or read is worked out with pyoco's own parser and expression compiler, not with
  the policy's code, so a gap between the two is found.
* A snapshot encoded for KV never exceeds ``PYOCO_MAX_RUN_SNAPSHOT_BYTES``, and when dropping
  task records is enough, the task states are kept.
* Configuration parsing rejects every malformed value with a :class:`ConfigError` naming the
  variable, accepts every well-formed one, and never fails any other way.

``PYOCO_PROPERTY_EXAMPLES`` (default 150 per property) searches deeper.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import time
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pyoco.dsl.expressions import ensure_expression
from pyoco.dsl.graph import _compile_expression, parse_graph, resolve_pipe_refs
from pyoco.dsl.graph_terms import ForEachTerm, RepeatTerm, SwitchTerm, TaskTerm, UntilTerm

from pyoco_server.builtin.yaml_policy import pyoco_check_workflow_yaml
from pyoco_server.config import Settings
from pyoco_server.errors import ConfigError, PolicyViolation
from pyoco_server.log import configure_logging, get_logger
from pyoco_server.model import WorkflowContext
from pyoco_server.nesting import NestingTooDeep, loads_bounded, nesting_depth
from pyoco_server.run_store import encode_capped

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("PYOCO_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# -- the YAML policy -------------------------------------------------------------------------

ALLOWED_PREFIX = "tests.flows"
ALLOWED_ENV = ("ALLOWED", "BOTH")
POLICY = Settings(yaml_allowed_callables=(ALLOWED_PREFIX,), yaml_allowed_env=ALLOWED_ENV)

_identifier = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
_allowed_callables = st.sampled_from(
    ["tests.flows.sample_tasks:add_one", "tests.flows:f", "tests.flows.sub.deeper:f"]
)
#: True about one time in eight (hypothesis favours the first of ``sampled_from``'s values
#: only when shrinking).
_rarely = st.sampled_from([False] * 7 + [True])
_hostile_callables = st.one_of(
    st.sampled_from(
        [
            "tests.flows.sample_tasks:add_one",
            "tests.flows:resolver",
            "tests.flows.sub.deeper:f",
            "tests.flowsx:f",
            "tests.flows_evil:f",
            "tests:flows",
            "tests.flow:f",
            "os:system",
            "builtins:eval",
            "subprocess:run",
            "tests.flows.sample_tasks:add_one\n",
            "tests.flows:a:b",
            " tests.flows.x:f",
            "Tests.flows.x:f",
        ]
    ),
    st.text(max_size=30),
)
_uses = st.one_of(
    st.sampled_from(
        ["tests.flows", "tests.flows/x", "tests.flows.x", "tests.flowsx/y", "other/x", "add_one"]
    ),
    st.text(max_size=20),
)
_env_names = st.one_of(
    st.sampled_from(["ALLOWED", "BOTH"]),
    st.sampled_from(["ALLOWED", "BOTH", "SECRET", "EXPOSED", "HOME", "PATH", ""]),
    st.text(alphabet="ABLOWEDSCRT_-.$ \n0", max_size=12),
)
_env_suffixes = st.sampled_from(["", "", "-X", ".x", "\n", " ", "_2", "$", ".SECRET", "=1"])


@st.composite
def _env_reference(draw: st.DrawFn) -> str:
    name = draw(_env_names) + draw(_env_suffixes)
    form = draw(
        st.sampled_from(
            [
                "$env.{}",
                "{{{{ env.{} }}}}",
                "{{{{ $env.{} }}}}",
                "env.{}",
                "prefix $env.{} suffix",
                "$ENV.{}",
                "$env.{} == 'x'",
                "$ctx.params.n",
            ]
        )
    )
    return form.format(name)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def _graph(draw: st.DrawFn, names: list[str]) -> str:
    """A pyoco graph over ``names``, with control-flow terms whose expressions may read env."""

    def task() -> str:
        return draw(st.sampled_from(names))

    def expression() -> str:
        value = draw(st.one_of(_env_reference(), st.sampled_from(["n", "params.n", "3"])))
        if draw(st.booleans()) and "}}" not in value:
            return "{{ " + value + " }}"
        return _quoted(value)

    terms = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["task", "switch", "repeat", "foreach", "until", "pipe"]))
        if kind == "switch":
            terms.append(f"switch(on={expression()}) {{ x: {task()}; default: {task()} }}")
        elif kind == "repeat":
            terms.append(f"repeat(count={expression()}) {{ {task()} }}")
        elif kind == "foreach":
            terms.append(f"foreach(over={expression()}) {{ {task()} }}")
        elif kind == "until":
            terms.append(f"until(cond={expression()}, max_iter=2) {{ {task()} }}")
        elif kind == "pipe":
            terms.append("pipe(p)")
        else:
            terms.append(task())
    return " >> ".join(terms)


def _junk() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.integers(), st.text(max_size=10), _env_reference())
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=6,
    )


@st.composite
def workflow_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed single-flow documents with hostile values in many places."""
    names = draw(st.lists(_identifier, min_size=1, max_size=3, unique=True))
    tasks: dict[str, Any] = {}
    for name in names:
        conf: dict[str, Any] = {}
        if draw(_rarely):
            conf["use"] = draw(_uses)
        elif draw(_rarely):
            conf["callable"] = draw(_hostile_callables)
        else:
            conf["callable"] = draw(_allowed_callables)
        if draw(st.booleans()):
            values = st.one_of(_env_reference(), _env_reference(), _junk())
            conf["inputs"] = draw(st.dictionaries(_identifier, values, min_size=1, max_size=3))
        if draw(_rarely):
            conf[draw(st.sampled_from(["outputs", "extra", "flows"]))] = draw(_junk())
        tasks[name] = conf
    document: dict[str, Any] = {
        "version": 1,
        "flow": {"graph": draw(_graph(names))},
        "tasks": tasks,
        "pipes": {"p": draw(st.sampled_from(names))},
    }
    if draw(st.booleans()):
        document["flow"]["defaults"] = {"n": draw(_junk())}
    exposed = draw(st.lists(_env_names, max_size=4))
    if draw(st.booleans()):
        exposed += list(ALLOWED_ENV)
    if exposed or draw(st.booleans()):
        document["runtime"] = {"expose_env": exposed}
    if draw(_rarely):
        document[draw(st.sampled_from(["discovery", "flows", "other"]))] = draw(_junk())
    return document


def _terms(pipeline: Any):
    for term in pipeline.terms:
        yield term
        if isinstance(term, SwitchTerm):
            for case in term.cases:
                yield from _terms(case.branch)
            if term.default is not None:
                yield from _terms(term.default)
        elif isinstance(term, (RepeatTerm, ForEachTerm, UntilTerm)):
            yield from _terms(term.body)


def _expression_env_reads(raw: str, default_to_params: bool) -> set[str]:
    """Names pyoco's compiled expression reads from the environment (``$env.<path>``)."""
    try:
        compiled = _compile_expression(raw, default_to_params=default_to_params)
        ensure_expression(compiled)  # pyoco refuses to build a flow whose expression fails
    except Exception:
        return set()
    return {path.split(".")[0] for path in re.findall(r"\$env\.([A-Za-z_][\w.]*)", compiled)}


def what_pyoco_would_touch(document: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    """(modules imported for ``callable``, ``use`` targets, environment names read)."""
    modules, uses, env = set(), set(), set()
    for conf in document["tasks"].values():
        if conf.get("callable"):
            modules.add(conf["callable"].split(":")[0])
        if conf.get("use"):
            uses.add(conf["use"])
        for value in (conf.get("inputs") or {}).values():
            if isinstance(value, str) and value.startswith("$env."):  # Context.resolve
                env.add(value[len("$env.") :])
    pipeline = resolve_pipe_refs(parse_graph(document["flow"]["graph"]), document["pipes"])
    for term in _terms(pipeline):
        if isinstance(term, SwitchTerm):
            env |= _expression_env_reads(term.on, True)
        elif isinstance(term, RepeatTerm):
            if not term.count.isdigit():  # a literal count is no expression
                env |= _expression_env_reads(term.count, True)
        elif isinstance(term, ForEachTerm):
            env |= _expression_env_reads(term.over, True)
        elif isinstance(term, UntilTerm):
            env |= _expression_env_reads(term.cond, False)
        else:
            assert isinstance(term, TaskTerm), term
    return modules, uses, env


def _accepted(document: dict[str, Any]) -> bool:
    raw = json.dumps(document).encode()
    context = WorkflowContext(settings=POLICY, flow_name="f", where="gateway")
    try:
        pyoco_check_workflow_yaml(document=document, raw=raw, context=context)
    except PolicyViolation:
        return False
    return True


def _under(target: str, separators: str) -> bool:
    return target == ALLOWED_PREFIX or any(
        target.startswith(ALLOWED_PREFIX + sep) for sep in separators
    )


def _document(graph: str, inputs: dict[str, Any], expose: list[str]) -> dict[str, Any]:
    task = {"callable": "tests.flows.sample_tasks:add_one", "inputs": inputs}
    return {
        "flow": {"graph": graph},
        "tasks": {"a": task, "b": dict(task)},
        "pipes": {"p": "a"},
        "runtime": {"expose_env": expose},
    }


@PROPERTY_SETTINGS
@given(workflow_documents())
# Found by this property (both were accepted and read the variable on the worker):
@example(_document('switch(on="{{ env.SECRET }}") { x: a; default: b }', {}, []))
@example(_document("a", {"x": "$env.ALLOWED-SECRET"}, ["ALLOWED"]))
@example(_document("a", {"x": "$env.ALLOWED\n"}, ["ALLOWED"]))
def test_policy_never_accepts_a_foreign_callable_or_an_unlisted_env_name(document):
    assume(_accepted(document))
    modules, uses, env = what_pyoco_would_touch(document)
    for module in modules:
        assert _under(module, "."), f"imports {module!r}"
    for target in uses:
        assert _under(target, "./"), f"uses {target!r}"
    exposed = set(document.get("runtime", {}).get("expose_env") or [])
    for name in env:
        assert name in ALLOWED_ENV and name in exposed, f"reads ${name!r}"


def test_the_document_generator_reaches_accepted_documents():
    """Guard for the property above: enough generated documents pass the policy."""
    accepted = []

    @settings(max_examples=200, deadline=None)
    @given(workflow_documents())
    def sample(document):
        accepted.append(_accepted(document))

    sample()
    assert sum(accepted) >= 10, f"only {sum(accepted)} of {len(accepted)} accepted"


# -- the snapshot size cap -------------------------------------------------------------------

_text = st.text(max_size=400)
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _text)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=20), inner, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def snapshots(draw: st.DrawFn) -> dict[str, Any]:
    # Long runs of one character, often multi-byte or escaped in JSON (control characters).
    long_text = st.builds(
        lambda char, count: char * count,
        st.sampled_from(["x", "\u00e9", "\u6f22", "\U0001f600", "\x00", '"', "\n"]),
        st.integers(50, 3000),
    )
    big = st.one_of(st.text(max_size=40), long_text)
    snapshot: dict[str, Any] = {
        "run_id": draw(st.one_of(st.uuids().map(str), st.text(max_size=300))),
        "flow_name": draw(big),
        "status": draw(st.sampled_from(["PENDING", "RUNNING", "COMPLETED", "FAILED"])),
        "params": draw(_json_value),
        "tag": draw(big),
        "tags": draw(st.lists(_text, max_size=5)),
        "tasks": draw(st.dictionaries(st.text(max_size=50), _text, max_size=40)),
        "task_records": draw(st.dictionaries(st.text(max_size=20), _json_value, max_size=10)),
        "worker_id": draw(big),
        "tenant_id": draw(st.one_of(st.none(), big)),
        "api_key_id": draw(st.one_of(st.none(), big)),
        "error": draw(st.one_of(st.none(), big)),
        "heartbeat_at": 1.0,
        "updated_at": 2.0,
    }
    for key in draw(st.lists(st.text(max_size=30), max_size=4)):
        snapshot[key] = draw(_json_value)
    return snapshot


@PROPERTY_SETTINGS
@given(snapshots(), st.integers(min_value=1024, max_value=64 * 1024))
# Found by this property: long texts that JSON escapes (or multi-byte ones) beat the last resort.
@example({"run_id": "r", "status": "PENDING", "worker_id": "\x00" * 300}, 1024)
@example({"run_id": "r", "status": "FAILED", "flow_name": "\u6f22" * 256, "tasks": {}}, 1024)
def test_an_encoded_snapshot_never_exceeds_the_cap(snapshot, cap):
    without_records = {**snapshot, "task_records": {}, "task_records_truncated": True}
    records_were_enough = (
        len(json.dumps(without_records, separators=(",", ":"), ensure_ascii=False).encode()) <= cap
    )
    tasks = snapshot.get("tasks")
    data = encode_capped(snapshot, cap)
    assert len(data) <= cap
    decoded = json.loads(data)
    if UUID.fullmatch(snapshot["run_id"]):  # what run ids are; never trimmed
        assert decoded["run_id"] == snapshot["run_id"]
    assert decoded["status"] == snapshot["status"]
    if records_were_enough:
        assert decoded.get("tasks") == tasks


# -- configuration ---------------------------------------------------------------------------

FIELDS = {spec.name: spec for spec in dataclasses.fields(Settings)}
ENV = {name: spec.metadata["env"] for name, spec in FIELDS.items()}
INT_FIELDS = [name for name, spec in FIELDS.items() if spec.type == "int"]
FLOAT_FIELDS = [name for name, spec in FIELDS.items() if spec.type == "float"]
BOOL_FIELDS = [name for name, spec in FIELDS.items() if spec.type == "bool"]


def _declared_bound(name: str) -> tuple[float, bool]:
    """``(minimum, inclusive)`` a number setting declares in its error ("an integer >= 1")."""
    try:
        FIELDS[name].metadata["parser"](ENV[name], "-99999999")
    except ConfigError as error:
        match = re.search(r"(>=|>) (\S+)$", error.expected)
        assert match, error.expected
        return float(match.group(2)), match.group(1) == ">="
    raise AssertionError(f"{name} accepts -99999999")


def _declared_maximum(name: str) -> float | None:
    """The largest value a number setting accepts, as its error declares it ("an integer
    from 2 to 200", e.g. ``PYOCO_MAX_NESTING_DEPTH``), or ``None`` when it has no maximum."""
    try:
        FIELDS[name].metadata["parser"](ENV[name], "99999999")
    except ConfigError as error:
        match = re.search(r" to (\S+)$", error.expected)
        assert match, error.expected
        return float(match.group(1))
    return None


BOUNDS = {name: _declared_bound(name) for name in INT_FIELDS + FLOAT_FIELDS}
MAXIMUMS = {name: _declared_maximum(name) for name in INT_FIELDS + FLOAT_FIELDS}
#: Well-formed numbers (surrounding whitespace, as ``str.strip`` removes it, is ignored).
STRICT_INT = re.compile(r"\+?[0-9]+")
STRICT_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
BOOLEAN_WORDS = {"1", "true", "yes", "on", "0", "false", "no", "off"}
NAME_FIELDS = [name for name, spec in FIELDS.items() if name.endswith(("_stream", "_kv_bucket"))]
CHOICES = {
    "http_auth_mode": {"none", "api_key"},
    "log_format": {"json", "text"},
    "log_level": {"debug", "info", "warning", "error", "critical"},
}


def _rejected_naming(variable: str, environ: dict[str, str]) -> None:
    try:
        Settings.from_env(environ)
    except ConfigError as error:
        assert error.name == variable, (error.name, environ)
        assert variable in str(error)
        return
    raise AssertionError(f"accepted {environ!r}")


def _out_of_bounds(name: str, value: float) -> bool:
    minimum, inclusive = BOUNDS[name]
    maximum = MAXIMUMS[name]
    if maximum is not None and value > maximum:
        return True
    return value < minimum or (value == minimum and not inclusive)


def _int_malformed(name: str, raw: str) -> bool:
    if not STRICT_INT.fullmatch(raw.strip()):
        return True
    return _out_of_bounds(name, int(raw.strip()))


def _float_malformed(name: str, raw: str) -> bool:
    if not STRICT_FLOAT.fullmatch(raw.strip()):
        return True
    return _out_of_bounds(name, float(raw.strip()))


_values = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"\s*[+-]?[0-9_]{0,4}\.?[0-9]{0,3}([eE][+-]?[0-9]{1,2})?\s*", fullmatch=True),
    st.sampled_from(
        ["nan", "inf", "-inf", "1_000", "\u0661\u0662", "\uff11\uff10", "0x10", "1e400", "--1", "0"]
    ),
)


@PROPERTY_SETTINGS
@given(st.sampled_from(INT_FIELDS), _values)
def test_every_malformed_integer_is_rejected_by_name(name, raw):
    assume(raw.strip())
    if _int_malformed(name, raw):
        _rejected_naming(ENV[name], {ENV[name]: raw})
    else:
        assert getattr(Settings.from_env({ENV[name]: raw}), name) == int(raw.strip())


@PROPERTY_SETTINGS
@given(st.sampled_from(FLOAT_FIELDS), _values)
def test_every_malformed_number_is_rejected_by_name(name, raw):
    assume(raw.strip())
    if _float_malformed(name, raw) or float(raw.strip()) == float("inf"):
        _rejected_naming(ENV[name], {ENV[name]: raw})
        return
    try:
        settings_ = Settings.from_env({ENV[name]: raw})
    except ConfigError as error:  # a relation between two settings (e.g. below AckWait)
        assert error.name != ENV[name] or re.search(r"PYOCO_[A-Z0-9_]+", error.expected), error
        return
    assert getattr(settings_, name) == float(raw.strip())


@PROPERTY_SETTINGS
@given(st.sampled_from(BOOL_FIELDS), st.one_of(st.text(max_size=8), st.sampled_from(["TRUE"])))
def test_every_malformed_boolean_is_rejected_by_name(name, raw):
    assume(raw.strip())
    if raw.strip().lower() in BOOLEAN_WORDS:
        expected = raw.strip().lower() in {"1", "true", "yes", "on"}
        assert getattr(Settings.from_env({ENV[name]: raw}), name) is expected
    else:
        _rejected_naming(ENV[name], {ENV[name]: raw})


@PROPERTY_SETTINGS
@given(
    st.sampled_from([*NAME_FIELDS, "default_tag", "work_subject_prefix", "dlq_subject_prefix"]),
    st.one_of(st.text(max_size=12), st.from_regex(r"[A-Za-z0-9_.-]{1,8}\n?", fullmatch=True)),
)
def test_every_malformed_name_is_rejected_by_name(name, raw):
    assume(raw.strip())
    token = r"[A-Za-z0-9_-]+"
    pattern = rf"{token}(\.{token})*" if name.endswith("subject_prefix") else token
    if re.fullmatch(pattern, raw.strip(), flags=re.ASCII):
        environ = {ENV[name]: raw}
        # The two subject prefixes must differ: give the other one a value never generated.
        if name == "dlq_subject_prefix":
            environ[ENV["work_subject_prefix"]] = "work.prefix.of.this.test"
        if name == "work_subject_prefix":
            environ[ENV["dlq_subject_prefix"]] = "dlq.prefix.of.this.test"
        assert getattr(Settings.from_env(environ), name) == raw.strip()
    else:
        _rejected_naming(ENV[name], {ENV[name]: raw})


@PROPERTY_SETTINGS
@given(st.sampled_from(sorted(CHOICES)), st.text(max_size=10))
def test_every_unknown_choice_is_rejected_by_name(name, raw):
    assume(raw.strip())
    if raw.strip().lower() in CHOICES[name]:
        Settings.from_env({ENV[name]: raw, ENV["auth_pepper"]: "p" * 16})
    else:
        _rejected_naming(ENV[name], {ENV[name]: raw})


@PROPERTY_SETTINGS
@given(st.sampled_from(sorted(FIELDS)), st.text(max_size=20))
def test_any_value_of_any_setting_parses_or_is_a_named_error(name, raw):
    try:
        Settings.from_env({ENV[name]: raw})
    except ConfigError as error:
        assert error.name.startswith("PYOCO_")
        assert str(error).startswith(error.name)


# -- nesting depth ---------------------------------------------------------------------------
# Every parsed document is measured without recursion and refused past the limit; whatever is
# logged is rendered within bounded time and size, in both log formats.


@st.composite
def nested_documents(draw: st.DrawFn) -> tuple[str, int]:
    """JSON text nesting objects/arrays (in any order, with siblings) to a drawn depth."""
    depth = draw(st.one_of(st.integers(1, 80), st.integers(80, 6000)))
    kinds = draw(st.lists(st.booleans(), min_size=depth, max_size=depth))
    sibling = draw(st.sampled_from(["", '"s"', "1.5", "null", '{"x": [1, {"y": 2}]}']))
    opening, closing = [], []
    for is_object in kinds:
        if is_object:
            opening.append('{"k": ' if not sibling else f'{{"s": {sibling}, "k": ')
            closing.append("}")
        else:
            opening.append("[" if not sibling else f"[{sibling}, ")
            closing.append("]")
    leaf = draw(st.sampled_from(["0", '"leaf"', "[]", "{}", "true"]))
    text = "".join(opening) + leaf + "".join(reversed(closing))
    # A sibling object holding [1, {"y": 2}] adds up to 3 levels beside its level.
    deepest = max(depth + (1 if leaf in ("[]", "{}") else 0), depth + 3 if "{" in sibling else 0)
    return text, deepest


@PROPERTY_SETTINGS
@given(nested_documents(), st.integers(min_value=2, max_value=200))
def test_any_nesting_is_accepted_within_the_limit_and_refused_past_it(document, limit):
    text, depth = document
    try:
        parsed = loads_bounded(text, limit, "body")
    except NestingTooDeep as exc:
        assert depth > limit
        assert exc.limit == limit and f"PYOCO_MAX_NESTING_DEPTH={limit}" in str(exc)
    else:
        assert nesting_depth(parsed) <= limit
        assert depth <= limit


@PROPERTY_SETTINGS
@given(nested_documents(), st.sampled_from(["json", "text"]))
def test_logging_any_nested_value_or_its_error_is_bounded(document, log_format):
    text, _ = document
    stream = io.StringIO()
    configure_logging(Settings(log_format=log_format), "pyoco-server:http", stream=stream)
    try:
        value = json.loads(text)
    except RecursionError as exc:
        value = exc
    started = time.monotonic()
    try:
        raise ValueError(value)
    except ValueError:
        get_logger("property").exception("nested", params=value, detail=text)
    assert time.monotonic() - started < 1.0
    assert 0 < len(stream.getvalue()) < 30_000
