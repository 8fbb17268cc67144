"""The archc runtime: a Starlette gateway that serves a bundle (request -> resolve -> router -> adapter -> upstream).

Imports only `archc.bundle` from the compiler.
"""
