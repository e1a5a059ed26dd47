"""The per-language YAMLs and `sets/`, installed as the package `xtremedistil_ner.language_files`
(pyproject.toml maps this folder there), so that `xtremedistil_ner.languages` finds them with
`importlib.resources` in a wheel and in an editable install alike. Only data lives here; this file
exists because setuptools' editable-install finder cannot import a namespace package (a folder
without `__init__.py`) nested in a regular one."""
