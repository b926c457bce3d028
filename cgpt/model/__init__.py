"""The GPT-3-style decoder of Cerebras-GPT (SP and muP): :mod:`cgpt.model.gpt`; its params: :mod:`cgpt.model.params`."""
