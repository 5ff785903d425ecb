"""Type aliases of the public API (for annotations only)."""
from __future__ import annotations

import os
from typing import Mapping, Sequence, Union

#: a file or directory
PathLike = Union[str, "os.PathLike[str]"]
#: token ids (ints or numpy integers; each must fit in int32)
TokenIds = Sequence[int]
#: text (encoded with the model's tokenizer) or token ids
TextOrIds = Union[str, TokenIds]
#: stop tokens: an id, a single-token string, or a sequence of them
StopTokens = Union[int, str, Sequence[Union[int, str]]]
#: additive logit bias per token id
Bias = Mapping[int, float]
