"""The research harness (``aigp.evaluation``): the paper's evaluation reproduced on the market simulator.

``harness`` runs ``aigp evaluate`` (Tables 2-5 and 7, Fig. 3-5) into EVALUATION.md; ``baselines`` holds the
offline-RL policies only the evaluation compares against (DDPG, SAC, Decision Transformer). Not part of the
core: the product does not need it to train, gate, serve or monitor a model.
"""
