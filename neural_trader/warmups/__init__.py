"""The warm-ups wing: the seed's two warm-ups, framework-free: a 1-D linear regression and a noisy-hyperplane classifier.

Both train with the study's generic `train.fit` (RMSprop, minibatches reshuffled
every epoch), so the warm-ups exercise the same trainer as the trader. Data
draws take explicit `torch.Generator`s (see `data.make_generator`); nothing
here touches the global RNG, a file or an orchestration framework.

Replicas: the `fit_*` functions take either one seed (one replica, S=1) or a
sequence of S seeds (S replicas trained in one batched run, replica s
initialised from seeds[s] and shuffled by its counter-based streams). The data
are shared by all replicas.
The reports describe one replica, chosen with `replica=` (default 0).

Regression (seed section "Linear Regression"):
    y = beta0 + beta1 * x + sigma * eps,   x, eps ~ N(0, 1)
fitted by minimising mean squared error; sigma is backed out afterwards from
the residuals (the Gaussian likelihood's maximiser in sigma given the betas).

Classifier (seed section "Neural Networks"):
    label = 1{beta0 + x @ beta1 + e > 0},   x ~ N(0, I_dim),  e ~ Logistic(0, 1)
with beta0 = 0 and beta1 = ones(dim), learnt by a dim -> hidden -> 2-logit
network under cross-entropy. Since P(label = 1 | x) = sigmoid(z), z = beta0 + x @ beta1,
the Bayes classifier predicts 1 when z > 0 and is right with probability
sigmoid(|z|); its accuracy is E[sigmoid(|z|)] with z ~ N(beta0, |beta1|^2).

Modules: `config` (the `warmups` section), `regression`, `classifier`, `_common`
(replicas and streams). This package imports nothing itself, so its config is light.
"""
