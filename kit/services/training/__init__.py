"""`kit finetune`: LoRA (or QLoRA) on a domain's conversations, grounded the way the runtime grounds them.

One idea per module, read in this order:

- ``preset``: the hyper-parameters, one YAML file per preset in kit/presets/ (``kit finetune`` makes a flag of
  every field);
- ``data``: conversations -> the prompts the runtime would send (retrieval, the follow-up rule and the prompt
  contract of ``kit.services.assistant.prompt``), tokenised with labels on the assistant's tokens only;
- ``run_folder``: the self-describing run folder ``kit export`` reads, and its checkpoints;
- ``processes``: which process writes when ``accelerate launch`` starts several (rank 0 only);
- ``loop``: one optimizer step, the validation loss, the batches of a step;
- ``recipe``: ``finetune`` = setup -> fit -> save, around ``kit.components.trainer``;
- ``loss_plot``: the loss curve as a small SVG.

Nothing here imports torch at module level.
"""
