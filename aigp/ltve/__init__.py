"""Long-Term Value Estimator: reward (eq. 3), transitions, the offline-RL critic (Algorithm 1), evaluation."""
