"""A Sphinx extension of this book: each script once per page.

sphinx-thebe adds its inline configuration (``const THEBE_JS_URL = ...``) twice under Jupyter
Book 1.x, and the second copy raises "Identifier 'THEBE_JS_URL' has already been declared" in
the reader's console on every page. Scripts that are the same file with the same attributes
(or the same inline body; its file name may be None or "") are kept once, in their first place.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        name = getattr(script, "filename", str(script)) or ""
        key = (name, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)  # after the extensions that add scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
