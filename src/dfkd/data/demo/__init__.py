"""The offline demo corpus (``dfkd corpus demo``): ``speech`` and ``noise`` sources, ``build``
mixes them into a VoiceBank-like folder layout."""
