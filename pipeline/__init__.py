"""Multitask soft-prompt transfer: prompt tuning, MPT distillation and target adaptation on a frozen LM."""

__version__ = "0.1.0"
