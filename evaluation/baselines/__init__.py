"""Offline-RL pricing baselines of the paper's Table 3, each a readable single-file algorithm (CORL style):

- :mod:`~aigp.evaluation.baselines.ddpg`: DDPG after Liu et al. (2019) with the DRCR reward and expert pre-training;
- :mod:`~aigp.evaluation.baselines.sac`: soft actor-critic on the LTVE reward (eq. 3);
- :mod:`~aigp.evaluation.baselines.dt`: a small Decision Transformer conditioned on the return-to-go.

All of them read the state as the LTVE's feature normaliser encodes it (fitted on the training window,
:mod:`aigp.ltve.dataset`), emit actions inside A_safe by construction (tanh-squashed onto the feasible
interval of :func:`aigp.action.feasible_change_bounds`) and project through :func:`aigp.action.project_to_safe`
before an action leaves the policy. Each trained model is a market ``Policy`` (:mod:`aigp.market.observation`),
so the simulated A/B runs it like any other baseline. Data preparation lives in :mod:`~aigp.evaluation.baselines.data`.
"""
