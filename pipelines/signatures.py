"""KFP signatures generated from a pydantic model, so a pipeline's parameters are declared once (the model).

KFP reads a pipeline's and a component's interface from the Python function: ``inspect.signature`` gives each
input's name, type annotation and default (``kfp.dsl.component_factory.extract_component_interface``), and the
docstring's ``Args:`` section each input's description. Two kinds of function are built here:

- :func:`pipeline_function`: a pipeline body written against the model (``p.delta_q``) behind a generated
  ``__signature__``. KFP calls a pipeline function once while compiling, with one channel per input, and never
  embeds its source, so a signature object is enough.
- :func:`component_function`: a lightweight component's function as *generated source*. KFP embeds a component's
  source text in the IR (``inspect.getsource``) and the container's executor reads the inputs from that text's
  signature, so a ``__signature__`` would not survive; the generated ``def`` is registered with ``linecache``
  (as ``dataclasses`` and ``attrs`` do with theirs) so that ``inspect.getsource`` returns it.

Imports no KFP: the result is a plain function for ``@dsl.pipeline`` / ``@dsl.component``.
"""

from __future__ import annotations

import inspect
import linecache
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

_KFP_TYPES = (str, int, float, bool)  # the parameter types a field may have here (KFP also has list and dict)


def _fields(model: type[BaseModel]) -> list[tuple[str, Any]]:
    """``(name, FieldInfo)`` of every field, those without a default first (a Python signature wants them
    first; KFP sorts the inputs by name anyway)."""
    out = []
    for name, info in model.model_fields.items():
        if info.annotation not in _KFP_TYPES:
            raise TypeError(f"{model.__name__}.{name}: annotation {info.annotation!r} is not a KFP parameter type "
                            f"({', '.join(t.__name__ for t in _KFP_TYPES)})")
        out.append((name, info))
    return sorted(out, key=lambda item: not item[1].is_required())


def signature(model: type[BaseModel], return_annotation: Any = inspect.Signature.empty) -> inspect.Signature:
    """The Python signature of ``model``'s fields: annotation and default per field."""
    return inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=info.annotation,
                           default=inspect.Parameter.empty if info.is_required() else info.default)
         for name, info in _fields(model)],
        return_annotation=return_annotation)


def args_section(model: type[BaseModel]) -> str:
    """A Google-style ``Args:`` section with each field's description (what KFP shows for an input)."""
    lines = [f"    {name}: {info.description}" for name, info in _fields(model) if info.description]
    return "Args:\n" + "\n".join(lines) if lines else ""


def pipeline_function(model: type[M], body: Callable[[M], R], *, name: str, doc: str = "") -> Callable[..., R]:
    """A function with ``model``'s fields as its signature that calls ``body`` with one instance of ``model``
    whose fields hold the arguments as given: while KFP compiles, its pipeline channels (unvalidated:
    ``model_construct``)."""
    sig = signature(model, return_annotation=inspect.signature(body).return_annotation)

    def pipeline(*args: Any, **kwargs: Any) -> R:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return body(model.model_construct(**bound.arguments))

    pipeline.__signature__ = sig  # type: ignore[attr-defined]
    pipeline.__annotations__ = {p.name: p.annotation for p in sig.parameters.values()}
    pipeline.__name__ = pipeline.__qualname__ = name
    pipeline.__module__ = body.__module__
    pipeline.__doc__ = doc
    return pipeline


def component_function(name: str, model: type[BaseModel], *, body: str, returns: str, doc: str = "",
                       namespace: dict[str, Any] | None = None) -> Callable[..., Any]:
    """Compile ``def name(<model's fields>) -> returns:`` with the docstring ``doc`` and ``body`` (source lines,
    indented by four spaces) and register its source, so ``inspect.getsource`` (what KFP embeds in the IR)
    returns it. ``returns`` is evaluated in ``namespace`` (plus ``typing``'s names, as KFP's executor has them)."""
    if '"""' in doc or "\\" in doc:
        raise ValueError(f"{name}: the docstring may hold neither triple quotes nor backslashes: {doc!r}")
    sig = signature(model)

    def parameter(p: inspect.Parameter) -> str:
        annotation = p.annotation.__name__
        return f"{p.name}: {annotation}" if p.default is p.empty else f"{p.name}: {annotation} = {p.default!r}"

    doc_lines = [line if i == 0 else f"    {line}".rstrip() for i, line in enumerate(doc.splitlines())]
    doc_text = '    """' + "\n".join(doc_lines) + '\n    """\n' if doc else ""
    source = (f"def {name}(\n" + "".join(f"    {parameter(p)},\n" for p in sig.parameters.values())
              + f") -> {returns}:\n{doc_text}{body}")
    filename = f"<generated {name} ({model.__module__}.{model.__name__})>"
    scope: dict[str, Any] = {"__name__": model.__module__, **{k: getattr(typing, k) for k in typing.__all__},
                             **(namespace or {})}
    exec(compile(source, filename, "exec", dont_inherit=True), scope)  # not this module's __future__ annotations
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    func: Callable[..., Any] = scope[name]
    return func
