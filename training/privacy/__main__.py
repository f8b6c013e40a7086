"""``python -m training.privacy``: the privacy study (see ``training.privacy.study``)."""
from training.privacy.study import main

main()
