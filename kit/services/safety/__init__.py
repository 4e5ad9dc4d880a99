"""What runs around the model whatever it says: the rules and hand-off triggers, and personal data masked before
anything is kept."""
