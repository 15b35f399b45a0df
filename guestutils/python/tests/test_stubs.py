"""The shipped type stub agrees with the native module."""

import ast
import inspect
import os

import guestutils


def _stub():
    path = os.path.join(os.path.dirname(guestutils.__file__), "__init__.pyi")
    with open(path) as f:
        return ast.parse(f.read())


def test_stub_signatures_match_the_runtime():
    functions = [n for n in _stub().body if isinstance(n, ast.FunctionDef)]
    assert {f.name for f in functions} == {
        n for n in guestutils.__all__ if n.startswith(("get_", "wait_"))
    }
    for fn in functions:
        stub_args = fn.args.args
        defaults = [None] * (len(stub_args) - len(fn.args.defaults)) + [
            ast.literal_eval(d) for d in fn.args.defaults
        ]
        has_default = [False] * (len(stub_args) - len(fn.args.defaults)) + [True] * len(
            fn.args.defaults
        )
        runtime = list(inspect.signature(getattr(guestutils, fn.name)).parameters.values())
        assert [a.arg for a in stub_args] == [p.name for p in runtime], fn.name
        for arg, d, has, p in zip(stub_args, defaults, has_default, runtime):
            if has:
                assert p.default == d, (fn.name, arg.arg)
            else:
                assert p.default is inspect.Parameter.empty, (fn.name, arg.arg)


def test_stub_declares_the_exceptions():
    names = {n.name for n in _stub().body if isinstance(n, ast.ClassDef)}
    assigned = {
        t.id for n in _stub().body if isinstance(n, ast.Assign) for t in n.targets
    }
    assert "GuestUtilsError" in names
    assert "MaestroEnvironmentError" in assigned
