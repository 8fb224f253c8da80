"""Experiment tracking: experiments, runs, params, tags and metric histories."""
