"""Values and calls between a judge and a candidate process (RUNS INSIDE THE SANDBOX; stdlib only).

Shipped into both processes of an assert-based test, prepended to the judge's
and the candidate's program. The two processes share nothing but one socket:
every message is length-prefixed JSON, and every value is either *plain* data
(None, bool, int, float, str, list, tuple, set, frozenset, dict, bytes,
complex: rebuilt on arrival from exact builtin types) or a *reference* to an
object that stays in its owner's process; operations on a reference travel
back to its owner. So nothing the candidate sends can run code in the judge,
and no object of the candidate's can answer a comparison there.

What a peer may do with our objects is limited by the side we are on: the
judge is trusted and may do anything with the candidate's; the candidate may
only call, index, iterate and read or set public (non-underscore) attributes
of what the judge chose to pass it (a key function, a test's own class), never
reach modules or builtins through them.
"""
import json
import os
import struct
import sys
import types

MAX_MESSAGE = 64 << 20
_PLAIN_SCALARS = (type(None), bool, int, float, str)
# Builtin types a test may pass as values (``f(x, int)``): they cross by name.
_TYPES = {t.__name__: t for t in (int, float, str, bool, list, tuple, dict, set, frozenset, bytes, complex, object)}
_NEVER_EXPORTED = {"eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr", "globals",
                   "locals", "vars", "breakpoint", "input", "print", "exit", "quit", "help", "memoryview"}
# Exceptions a candidate's raise may become in the judge. Not the ones with a role in control flow
# (StopIteration ends a map() early, IndexError an old-style iteration, KeyError a mapping lookup,
# AttributeError a hasattr): a candidate raising one must not end a test's loop as if it passed.
_RAISABLE = {name: getattr(__builtins__ if isinstance(__builtins__, dict) else __builtins__, name, None) for name in (
    "ValueError", "TypeError", "ZeroDivisionError", "ArithmeticError", "OverflowError", "RuntimeError",
    "RecursionError", "NotImplementedError", "AssertionError", "UnicodeError", "FloatingPointError")}
if isinstance(__builtins__, dict):
    _RAISABLE = {k: __builtins__.get(k) for k in _RAISABLE}


class ProtocolError(Exception):
    """The peer broke the wire format (or sent more than it may)."""


class PeerGone(Exception):
    """The other process ended (or stopped answering) in the middle of an exchange."""


class CandidateError(Exception):
    """What the candidate's code raised, as the judge sees it."""


_error_classes = {}


def _error_class(name):
    base = _RAISABLE.get(name)
    if base is None:
        return CandidateError
    cls = _error_classes.get(name)
    if cls is None:
        cls = _error_classes[name] = type(name, (CandidateError, base), {"__module__": "candidate"})
    return cls


class Remote:
    """A reference to an object in the other process."""

    __slots__ = ("_ep", "_rid", "__weakref__")

    def __init__(self, ep, rid):
        object.__setattr__(self, "_ep", ep)
        object.__setattr__(self, "_rid", rid)

    def __call__(self, *args, **kwargs):
        return self._ep.request("call", self, args=list(args), kwargs=kwargs)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._ep.request("getattr", self, name=name)

    def __setattr__(self, name, value):
        self._ep.request("setattr", self, name=name, value=value)

    def __getitem__(self, key):
        return self._ep.request("getitem", self, key=key)

    def __setitem__(self, key, value):
        self._ep.request("setitem", self, key=key, value=value)

    def __len__(self):
        n = self._ep.request("len", self)
        if type(n) is not int:
            raise TypeError("len() of a remote object is not an int")
        return n

    def __contains__(self, item):
        return self._ep.request("contains", self, key=item) is True

    def __iter__(self):
        it = self._ep.request("iter", self)
        if type(it) is not Remote:
            raise TypeError("iter() of a remote object is not an iterator")
        return _RemoteIterator(it)

    def __repr__(self):
        r = self._ep.request("repr", self)
        return r if type(r) is str else "<remote object>"

    __str__ = __repr__

    def __bool__(self):
        if self._ep.trusted:  # the judge never takes a candidate object's word for truth
            raise TypeError("the truth value of a candidate's object is not a plain value")
        v = self._ep.request("bool", self)
        return v is True


class _RemoteIterator:
    __slots__ = ("_it",)

    def __init__(self, it):
        self._it = it

    def __iter__(self):
        return self

    def __next__(self):
        return self._it._ep.request("next", self._it)


class Endpoint:
    """One side of the socket. ``trusted``: this is the judge."""

    def __init__(self, fd, trusted):
        self.fd = fd
        self.trusted = trusted
        self.exports = {}  # id -> our object the peer holds a reference to
        self._ids = {}  # id(obj) -> export id
        self.remotes = {}  # peer's id -> Remote (so identity holds: a.left is a.left)
        self.allow_modules = False  # the judge reads a module name only in the candidate's greeting

    # -- framing ------------------------------------------------------------------------

    def send(self, msg):
        data = json.dumps(msg, separators=(",", ":")).encode()
        view = memoryview(struct.pack(">I", len(data)) + data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            raise PeerGone(str(e)) from None

    def _read(self, n):
        chunks, left = [], n
        while left:
            try:
                chunk = os.read(self.fd, min(left, 1 << 20))
            except OSError as e:
                raise PeerGone(str(e)) from None
            if not chunk:
                raise PeerGone("the other process ended")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def recv(self):
        (n,) = struct.unpack(">I", self._read(4))
        if n > MAX_MESSAGE:
            raise ProtocolError("message of %d bytes" % n)
        try:
            msg = json.loads(self._read(n))
        except (ValueError, RecursionError) as e:
            raise ProtocolError("undecodable message: %s" % type(e).__name__) from None
        if type(msg) is not dict:
            raise ProtocolError("message is not an object")
        return msg

    # -- values -------------------------------------------------------------------------

    def encode(self, v, depth=0):
        if depth > 200:
            raise ValueError("value nested too deeply")
        t = type(v)
        if t in _PLAIN_SCALARS:
            if t is float and v != v:
                return {"nan": 1}
            if t is float and v in (float("inf"), float("-inf")):
                return {"inf": 1 if v > 0 else -1}
            return v
        if t is list:
            return [self.encode(x, depth + 1) for x in v]
        if t is tuple:
            return {"t": [self.encode(x, depth + 1) for x in v]}
        if t is set or t is frozenset:
            return {"s" if t is set else "f": [self.encode(x, depth + 1) for x in v]}
        if t is dict:
            return {"d": [[self.encode(k, depth + 1), self.encode(x, depth + 1)] for k, x in v.items()]}
        if t is bytes:
            return {"b": v.hex()}
        if t is complex:
            return {"c": [v.real, v.imag]}
        if t is Remote:
            if v._ep is not self:
                raise ValueError("a reference from another channel")
            return {"o": v._rid}
        if t is types.ModuleType:
            return {"m": v.__name__}
        if t is type and _TYPES.get(getattr(v, "__name__", None)) is v:
            return {"y": v.__name__}
        plain = _plain_content(v)
        if plain is not None:
            return self.encode(plain, depth + 1)
        return {"r": self.export(v)}

    def export(self, obj):
        if self.trusted and getattr(obj, "__name__", None) in _NEVER_EXPORTED and type(obj) is type(print):
            raise TypeError("builtin %s can't be passed to the candidate" % obj.__name__)
        key = id(obj)
        rid = self._ids.get(key)
        if rid is None or self.exports.get(rid) is not obj:
            rid = len(self.exports) + 1
            self.exports[rid] = obj
            self._ids[key] = rid
        return rid

    def decode(self, v):
        t = type(v)
        if t in _PLAIN_SCALARS:
            return v
        if t is list:
            return [self.decode(x) for x in v]
        if t is not dict or len(v) != 1:
            raise ProtocolError("bad value")
        (tag, x), = v.items()
        if tag == "t":
            return tuple(self._seq(x))
        if tag == "s":
            return set(self._seq(x))
        if tag == "f":
            return frozenset(self._seq(x))
        if tag == "d":
            if type(x) is not list:
                raise ProtocolError("bad dict")
            out = {}
            for pair in x:
                if type(pair) is not list or len(pair) != 2:
                    raise ProtocolError("bad dict item")
                out[self.decode(pair[0])] = self.decode(pair[1])
            return out
        if tag == "b" and type(x) is str:
            return bytes.fromhex(x)
        if tag == "c" and type(x) is list and len(x) == 2 and all(type(p) in (int, float) for p in x):
            return complex(x[0], x[1])
        if tag == "nan":
            return float("nan")
        if tag == "inf":
            return float("inf") if x == 1 else float("-inf")
        if tag == "r" and type(x) is int:
            rem = self.remotes.get(x)
            if rem is None:
                rem = self.remotes[x] = Remote(self, x)
            return rem
        if tag == "o" and type(x) is int and x in self.exports:
            return self.exports[x]
        if tag == "m" and type(x) is str and self.allow_modules:
            return _module(x)
        if tag == "y" and type(x) is str and x in _TYPES:
            return _TYPES[x]
        raise ProtocolError("bad value tag %r" % tag)

    def _seq(self, x):
        if type(x) is not list:
            raise ProtocolError("bad sequence")
        return [self.decode(e) for e in x]

    # -- calls --------------------------------------------------------------------------

    def request(self, op, target, **fields):
        msg = {"op": op, "target": self.encode(target)}
        for k, v in fields.items():
            msg[k] = self.encode(v)
        self.send(msg)
        return self.wait()

    def wait(self):
        """The answer to our request, serving the peer's nested requests (callbacks) meanwhile."""
        while True:
            m = self.recv()
            if "op" in m:
                self.serve_one(m)
                continue
            if "ok" in m:
                return self.decode(m["ok"])
            if m.get("stop") is True:
                raise StopIteration
            err = m.get("err")
            if type(err) is dict:
                name, text = str(err.get("type", "Exception"))[:100], str(err.get("msg", ""))[:2000]
                if self.trusted:
                    raise _error_class(name)(text)
                raise RuntimeError("%s: %s" % (name, text))
            raise ProtocolError("bad answer")

    def serve_one(self, m):
        try:
            value = self._perform(m)
        except StopIteration:
            self.send({"stop": True})
            return
        except (PeerGone, ProtocolError):
            raise
        except BaseException as e:  # noqa: BLE001 - reported to the peer, whatever it was
            try:
                text = str(e)
            except BaseException:  # noqa: BLE001
                text = "<unprintable>"
            self.send({"err": {"type": type(e).__name__, "msg": text[:2000]}})
            return
        try:
            encoded = self.encode(value)
        except (ValueError, TypeError, RecursionError) as e:
            self.send({"err": {"type": "TypeError", "msg": "value can't cross: %s" % e}})
            return
        self.send({"ok": encoded})

    def serve(self):
        """Answer the peer's requests until it hangs up."""
        while True:
            try:
                m = self.recv()
            except PeerGone:
                return
            if "op" not in m:
                raise ProtocolError("an answer nobody asked for")
            self.serve_one(m)

    def _perform(self, m):
        op = m.get("op")
        raw = m.get("target")
        if self.trusted and not (type(raw) is dict and len(raw) == 1 and type(raw.get("o")) is int):
            # The candidate may only act on objects the judge passed it, never name one itself.
            raise ProtocolError("the candidate may only act on what the judge passed it")
        target = self.decode(raw)
        if type(target) is Remote:
            raise ProtocolError("a request on the peer's own object")
        name = m.get("name")
        if self.trusted and op in ("getattr", "setattr") and (type(name) is not str or name.startswith("_")):
            raise AttributeError("only public attributes of the judge's objects are reachable")
        if op == "call":
            args = self.decode(m.get("args", []))
            kwargs = self.decode(m.get("kwargs", {"d": []}))
            if type(args) is not list or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
                raise ProtocolError("bad call")
            return target(*args, **kwargs)
        if op == "getattr":
            value = getattr(target, name)
            if self.trusted and type(value) is types.ModuleType:
                raise AttributeError("modules of the judge are not reachable")
            return value
        if op == "setattr":
            setattr(target, name, self.decode(m.get("value")))
            return None
        if op == "getitem":
            return target[self.decode(m.get("key"))]
        if op == "setitem":
            target[self.decode(m.get("key"))] = self.decode(m.get("value"))
            return None
        if op == "len":
            return len(target)
        if op == "contains":
            return self.decode(m.get("key")) in target
        if op == "iter":
            return iter(target)
        if op == "next":
            return next(target)
        if op == "repr":
            return repr(target)
        if op == "bool":
            return bool(target)
        raise ProtocolError("unknown op %r" % op)


def _plain_content(v):
    """The plain value inside an instance of a subclass of a plain type (``Counter``, ``defaultdict``,
    a namedtuple, an ``IntEnum``), read through the base type's own methods so no override of the
    subclass is consulted; None for anything else."""
    if isinstance(v, bool):
        return bool(int.__int__(v))
    if isinstance(v, int):
        return int.__int__(v)
    if isinstance(v, float):
        return float.__float__(v)
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, bytes):
        return bytes.fromhex(bytes.hex(v))
    if isinstance(v, tuple):
        return tuple(list(tuple.__iter__(v)))
    if isinstance(v, list):
        return list(list.__iter__(v))
    if isinstance(v, dict):
        return dict(list(dict.items(v)))
    if isinstance(v, frozenset):
        return frozenset(list(frozenset.__iter__(v)))
    if isinstance(v, set):
        return set(list(set.__iter__(v)))
    return None


def _module(name):
    """A module named by the peer: our own import of it, stdlib only."""
    root = name.split(".")[0]
    if root not in sys.stdlib_module_names:
        raise ProtocolError("module %r is not in the standard library" % name)
    __import__(name)
    return sys.modules[name]
