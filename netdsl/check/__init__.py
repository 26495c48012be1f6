"""Check: AST to checked IR. The checker (``checker``) evaluates expressions
(``evaluate``, over the values of ``values``), expands blocks, loops and repetition,
names modules (``flows``), infers channels and shapes from the layer catalogue, and
reports every mistake a user can make as a located diagnostic. Its rules for
combinators, calls (``reuse``, ``apply``), named dataflow and extern modules live in
``combinators``, ``calls``, ``dataflow`` and ``extern``, functions of the checker as
``context`` declares it;
``lost`` notes what a mistake left unknown, so that it is reported once; ``memo``
reuses what was checked before; ``reserved`` lists the labels a module cannot take.
Nothing after this stage reports a user error.
"""
