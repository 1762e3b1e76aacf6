"""The MDP's definition: env settings, observation features and action mapping, rewards.

Nothing here runs an episode (that is :mod:`rlprune.env`); these are the terms a policy is
trained in, so they import neither the env nor data.
"""
