import GFNLM
