"""Synthetic speaker corpus of the mini recipe: source-filter voices heard through
random channels.

The mini recipe needs a corpus that ships with the code, costs seconds to make and
still poses a real speaker-verification problem. Each speaker gets the traits in
which real voices differ (voice); each utterance says random phone-like content
with that voice, varies the voice a little (as a person does from day to day)
and passes through a random channel (channel: EQ, reverberation, noise, level);
corpus writes the folder-per-speaker tree. An embedding network must therefore
learn the voice, not the recording.

Imported as ``synthetic`` by egs/mini/local/make_synthetic_corpus.py (Python puts
a script's own folder first on its path) and by the tests (pyproject.toml's
pytest pythonpath).
"""
