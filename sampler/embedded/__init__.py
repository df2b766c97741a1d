"""The embedded default chat model, built by the project itself from bundled data.

Pure Python, torch and transformers: nothing here imports Django. `build.py` builds the model
(`python -m sampler.embedded.build`), `samples.py` writes its SAMPLES.md.
"""
