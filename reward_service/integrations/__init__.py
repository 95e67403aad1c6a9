"""Drop-in adapters that let RL trainers (verl, OpenRLHF, TRL) use the reward service."""
