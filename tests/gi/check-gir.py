#!/usr/bin/python3
"""Checks Chat-1.0.gir: the namespace and its includes, "Since: 1.0" (version="1.0") on every
public symbol, nothing a binding cannot call (introspectable="0", varargs, untyped arrays,
C arrays without a length), no symbol of the internal API (src/libchat/*-private.h), and the
binding traps: a method named like one of GObject.Object's own (read from GObject-2.0.gir in
GIRDIR) or one PyGObject and GJS give every object, a method named like a signal or a
property of its class, and an error-domain enumeration passed by value.

    check-gir.py BUILD/src/libchat/Chat-1.0.gir GIRDIR
"""

import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

NS = {
    "core": "http://www.gtk.org/introspection/core/1.0",
    "c": "http://www.gtk.org/introspection/c/1.0",
    "glib": "http://www.gtk.org/introspection/glib/1.0",
}
CORE = "{%s}" % NS["core"]
C = "{%s}" % NS["c"]
GLIB = "{%s}" % NS["glib"]
SOURCE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "src", "libchat")

# What PyGObject and GJS add to every GObject.Object besides GObject-2.0.gir's methods: a
# method of ours with such a name hides them (GJS `server.disconnect(id)` would call ours).
BINDING_OBJECT_NAMES = {
    "connect", "connect_after", "connect_object", "connect_object_after", "disconnect",
    "disconnect_by_func", "emit", "stop_emission_by_name", "handler_block", "handler_unblock",
    "handler_block_by_func", "handler_unblock_by_func", "handler_disconnect",
    "handler_is_connected", "chain", "props", "weak_ref", "bind_property", "notify",
}
# GObject's keyed data: PyGObject refuses these ("Data access methods are unsupported"), GJS
# cannot use their gpointer and Vala's are generic (get_data<T> (key)), so no binding calls
# them on our objects and ChatMessage may use the name for its `data` member.
GOBJECT_DATA_METHODS = {"get_data", "set_data", "steal_data", "dup_data", "replace_data",
                        "set_data_full"}

problems = []


def problem(text):
    if text not in problems:  # a function of an enumeration is listed twice
        problems.append(text)


def name_of(element):
    return (element.get(C + "identifier") or element.get(GLIB + "name")
            or element.get("name") or element.tag)


def gobject_object_names(girdir):
    """The method, virtual method and signal names of GObject.Object."""
    gobject = ET.parse(os.path.join(girdir, "GObject-2.0.gir")).getroot()
    names = set()
    for class_ in gobject.find("core:namespace", NS).findall("core:class", NS):
        if class_.get("name") != "Object":
            continue
        for member in class_:
            if member.tag in (CORE + "method", CORE + "virtual-method", GLIB + "signal"):
                names.add(member.get("name").replace("-", "_"))
    if "disconnect" not in names or "notify" not in names:
        sys.exit(f"GObject.Object not found in {girdir}/GObject-2.0.gir")
    return names


def check_class_names(class_, reserved):
    """Binding traps in the names of one class's members."""
    name = class_.get("name")
    methods = {m.get("name") for m in class_.findall("core:method", NS)}
    signals = {s.get("name").replace("-", "_") for s in class_.findall("glib:signal", NS)}
    properties = {p.get("name").replace("-", "_") for p in class_.findall("core:property", NS)}
    for method in sorted(methods & reserved):
        problem(f"{name}.{method}() hides GObject.Object.{method}() in bindings "
                f"(GJS and Python call ours); rename it")
    for method in sorted(methods & signals):
        problem(f"{name}.{method}() has the name of the signal {name}::{method} "
                "(a Vala class cannot hold both)")
    for method in sorted(methods & properties):
        problem(f"{name}.{method}() has the name of the property {name}:{method} "
                "(a Vala class cannot hold both)")


def main(path, girdir):
    root = ET.parse(path).getroot()
    reserved = (gobject_object_names(girdir) | BINDING_OBJECT_NAMES) - GOBJECT_DATA_METHODS

    includes = {(i.get("name"), i.get("version")) for i in root.findall("core:include", NS)}
    for wanted in [("GObject", "2.0"), ("Gio", "2.0"), ("Json", "1.0"), ("Soup", "3.0")]:
        if wanted not in includes:
            problem(f"missing <include> {wanted[0]}-{wanted[1]}")
    packages = {p.get("name") for p in root.findall("core:package", NS)}
    if "chathub-1.0" not in packages:
        problem("missing <package name=\"chathub-1.0\">")
    if "chathub.h" not in {i.get("name") for i in root.findall("c:include", NS)}:
        problem("missing <c:include name=\"chathub.h\">")

    namespace = root.find("core:namespace", NS)
    if (namespace.get("name"), namespace.get("version")) != ("Chat", "1.0"):
        problem(f"namespace is {namespace.get('name')}-{namespace.get('version')}")
    if namespace.get(C + "identifier-prefixes") != "Chat" or namespace.get(C + "symbol-prefixes") != "chat":
        problem("prefixes are not Chat/chat")
    if "libchathub-1.0.so" not in (namespace.get("shared-library") or ""):
        problem(f"shared-library is {namespace.get('shared-library')}")

    # every public symbol has a version (gtk-doc "Since: 1.0")
    versioned = {"class", "record", "enumeration", "bitfield", "function", "method",
                 "constructor", "constant", "property", "signal", "function-macro", "callback",
                 "interface", "virtual-method"}
    count = 0
    for element in namespace.iter():
        tag = element.tag.split("}")[1]
        if tag not in versioned:
            continue
        if tag == "record" and element.get(GLIB + "is-gtype-struct-for"):
            continue  # FooClass of G_DECLARE_FINAL_TYPE
        count += 1
        if element.get("version") != "1.0":
            problem(f"{tag} {name_of(element)} has no Since: 1.0 (version={element.get('version')})")
        if element.get("introspectable") == "0" and tag != "function-macro":
            problem(f"{tag} {name_of(element)} is not introspectable")
        if element.find("core:doc", NS) is None:
            problem(f"{tag} {name_of(element)} is not documented")

    for callable_ in namespace.iter():
        if callable_.tag.split("}")[1] not in ("function", "method", "constructor", "signal"):
            continue
        for varargs in callable_.iter(CORE + "varargs"):
            problem(f"{name_of(callable_)} takes varargs")
        for array in callable_.iter(CORE + "array"):
            element_type = array.find("core:type", NS)
            if element_type is None or element_type.get("name") in (None, "gpointer", "none"):
                problem(f"{name_of(callable_)}: an array without an element type")
            # a C array (no GArray/GPtrArray name) must say where it ends
            if (array.get("name") is None and array.get("length") is None
                    and array.get("fixed-size") is None and array.get("zero-terminated") == "0"):
                problem(f"{name_of(callable_)}: a C array without a length")
        for parameter in callable_.iter(CORE + "parameter"):
            if parameter.get("direction") in ("out", "inout") and not parameter.get("transfer-ownership"):
                problem(f"{name_of(callable_)}: out parameter {parameter.get('name')} without transfer")

    for class_ in namespace.findall("core:class", NS):
        check_class_names(class_, reserved)

    # Vala reads an error domain's type as a GError*, never as one of its codes: a code
    # passes as (type gint), an error as a GError
    domains = {e.get("name") for e in namespace.findall("core:enumeration", NS)
               if e.get(GLIB + "error-domain")}
    for callable_ in namespace.iter():
        if callable_.tag.split("}")[1] not in ("function", "method", "constructor", "signal"):
            continue
        for value in list(callable_.iter(CORE + "parameter")) + list(
                callable_.iter(CORE + "return-value")):
            type_ = value.find("core:type", NS)
            if type_ is not None and type_.get("name") in domains:
                problem(f"{name_of(callable_)}: {value.get('name') or 'returns'} is the error "
                        f"domain {type_.get('name')}, which Vala reads as a GError; "
                        "annotate it (type gint)")

    # nothing of the internal API
    private = set()
    for header in glob.glob(os.path.join(SOURCE_DIR, "*-private.h")):
        with open(header, encoding="utf-8") as f:
            text = f.read()
        private.update(re.findall(r"\b(chat_[a-z0-9_]+)\s*\(", text))
        private.update(re.findall(r"\b(Chat[A-Z][A-Za-z]+)\b", text))
    public = set()
    for header in glob.glob(os.path.join(SOURCE_DIR, "chat*.h")):
        if header.endswith("-private.h"):
            continue
        with open(header, encoding="utf-8") as f:
            text = f.read()
        public.update(re.findall(r"\b(chat_[a-z0-9_]+)\s*\(", text))
        public.update(re.findall(r"\b(Chat[A-Z][A-Za-z]+)\b", text))
    internal = private - public
    for element in namespace.iter():
        for attribute in (C + "identifier", C + "type", GLIB + "type-name"):
            value = (element.get(attribute) or "").rstrip("*")
            if value in internal:
                problem(f"internal symbol {value} is in the GIR")

    print(f"{count} versioned symbols checked, {len(internal)} internal names kept out")
    for text in problems:
        print(f"FAIL: {text}")
    return 1 if problems or count == 0 else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
