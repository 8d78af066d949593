"""The one C extension; everything else about the package is in pyproject.toml.

``signer.hsm._p11batch`` signs a batch with the GIL released once (signer/hsm/p11batch.py). It
is optional: where it cannot be compiled, the signer signs through python-pkcs11 alone.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "signer.hsm._p11batch",
            sources=["signer/hsm/_p11batch.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
