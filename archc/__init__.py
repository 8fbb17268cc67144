"""archc: a routing compiler (load -> validate -> resolve -> emit) for LLM gateway configs.

No imports here, so `import archc.bundle` stays light for the runtime.
"""

__version__ = "0.1.0"
