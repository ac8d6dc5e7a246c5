"""Meta-learned cold start: adapters that personalise the ranker from a new user's first K
interactions (see `recsys.meta.base`).

One adapter per file, registered by name in `recsys.meta.registry`:

    none      the global ranker (the baseline)
    finetune  gradient steps on the support loss; scope, optimiser, lr, steps tuned on validation users
    maml      meta-learned initialisation, second order (Finn et al. ICML'17)
    fomaml    first-order MAML
    anil      only the last layers adapt (Raghu et al. ICLR'20)
    metasgd   per-element learned inner learning rates (Li et al. 2017)
    proto     prototypes in the ranker's embedding space (Snell et al. NeurIPS'17)
    blackbox  a DeepSets encoder of the support set writes the user's parameters (neural-process family)
    blackbox_maml  the encoder's output refined by two learned-rate gradient steps (amortised MAML)

Shared machinery: `functional` (the ranker as a function of the adapted tensors, scopes, the
masked support loss), `inner_loop` (the gradient steps), `gradient` (the MAML family's base),
`meta_training` (the outer loop: early stopping, checkpoint / resume) and `selection` (the
validation episodes and the like-AUC score everything is selected on).
"""
