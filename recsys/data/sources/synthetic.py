"""A YouTube-like watch-next simulator: users, videos, slates, clicks, likes and ratings.

It gives what MovieLens lacks (Zhao et al., "Recommending what video to watch next: a
multitask ranking system", RecSys'19): a query video beside every request, slates with
positions and a position (selection) bias on clicks, clickbait on which engagement and
satisfaction disagree, and the true probabilities behind every label, at any scale.

The generative story:

1. **Users.** Each user has raw features (age bucket, gender, region, activity) and a latent
   taste over topics, ``interest[u, t]`` (row-centred, about unit scale). Taste is the sum of
   a demographic part (one random topic profile per age bucket, gender and region) and an
   individual part; ``feature_share`` sets how much of the variance the features explain, so
   features help without revealing a user. ``new_user_frac`` of the users are marked new
   (cold start) and join after the others.
2. **Videos.** Each video has a topic, a ``quality`` (drives satisfaction) and a
   ``click_appeal`` (drives clicks; mildly correlated with quality). Clickbait videos
   (``clickbait_frac``) have high appeal and low quality and are mostly short. Popularity is
   Zipf-like: ``pop ∝ rank^-popularity_exponent`` with the rank taken from a noisy "buzz"
   score, so appealing videos (clickbait included) tend to be the popular ones.
3. **Requests.** Each user makes a number of requests (multinomial over users, skewed by
   activity). Request ``r`` of a user carries a query video, what the user just watched:
   none (id 0) on the first request; afterwards the item the user clicked last in an earlier
   slate (a forward fill of their own clicks, the watch-next chain), or, while they have not
   clicked anything yet, a video drawn from their interests (they found one by search or on
   the home page). Because the query of request ``r`` depends on the clicks of the requests
   before it, the sessions are played one *request rank* at a time; every step is vectorised
   over all users that still have requests left (users are sorted by request count, so they
   form a prefix), which costs O(max requests per user) Python steps, never a step per row.
4. **Slates.** Candidates mix the query video's topic (``related_frac``), the user's interests
   (topics drawn from ``softmax(interest_sharpness * interest)``) and global popularity
   (``popular_frac``), each picked by popularity within its pool; the first ``slate_size``
   distinct ones that are not the query video form the slate (a rare fallback samples the
   same mixture without replacement). A logging policy orders the slate by a noisy relevance
   score (``policy_sharpness``; 0 = random order), so position and relevance are confounded
   as in production logs.
5. **Labels.** With ``aff = interest[u, topic_i]`` and examination ``e(p) = p^-position_bias``::

       p_relevance = sigmoid(A0 + A1*aff + A2*click_appeal_i + A3*[topic_i == topic_query])
       p_click     = e(position) * p_relevance
       p_like      = sigmoid(B0 + B1*aff + B2*quality_i)          (given a click)

   A click is Bernoulli(p_click); on a click, like is Bernoulli(p_like), the watch fraction is
   Beta-distributed around ``sigmoid(C0 + C1*aff + C2*quality_i + duration effect)`` and the
   1-5 rating rises with the like, taste and quality. Clickbait is clicked more but liked,
   watched and rated less: exactly where weighting engagement against satisfaction matters.

The same seed gives identical frames. Users, videos, sessions and labels use separate random
streams, so the same seed and population give the same users and videos at any scale.

Example:
    >>> world = simulate(SimConfig(users=50, items=40, impressions=1_000, seed=1))
    >>> world.impressions.height, world.user_interest.shape
    (1000, (50, 20))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.errors import ConfigError

__all__ = ["SimConfig", "SimulatedWorld", "simulate"]

AGE_BUCKETS = ("18-24", "25-34", "35-44", "45-54", "55+")
GENDERS = ("female", "male", "other")
REGIONS = ("africa", "east-asia", "europe", "latam", "middle-east", "north-america", "oceania", "south-asia")
ACTIVITY = ("low", "med", "high")
DURATIONS = ("short", "medium", "long")

_AGE_P = (0.2, 0.3, 0.22, 0.16, 0.12)
_GENDER_P = (0.48, 0.48, 0.04)
_REGION_P = (0.08, 0.17, 0.18, 0.12, 0.06, 0.2, 0.04, 0.15)
_ACTIVITY_P = (0.35, 0.45, 0.2)
_ACTIVITY_RATE = np.array([0.35, 1.0, 2.6])  # relative request rate of low / med / high users
_SEGMENT_VAR = (0.45, 0.15, 0.40)  # share of the demographic taste from age, gender, region
_DURATION_P = (0.35, 0.45, 0.2)
_CLICKBAIT_DURATION_P = (0.75, 0.2, 0.05)

# Click model (logit scale). Chosen for an overall CTR of about 10% on 10-slot slates and a
# like rate among clicks of about 40% (see scripts/bench_synth.py for the measured figures).
A0, A1, A2, A3 = -2.6, 0.8, 0.6, 0.8
# Like given click: taste and quality; clickbait (quality about -1.5) is rarely liked.
B0, B1, B2 = -1.5, 0.8, 1.0
# Mean watch fraction given click; long videos are watched less far.
C0, C1, C2 = 0.0, 0.4, 0.7
_DURATION_WATCH = np.array([0.6, 0.0, -0.6])
_WATCH_CONCENTRATION = 4.0
# Rating given click: 2.5 + 1.2*like + 0.4*(taste + quality) + noise, rounded into 1..5.
R0, R1, R2, R_NOISE = 2.5, 1.2, 0.4, 0.8

_START_TIME = 1_700_000_000  # first second of the simulated log (Nov 2023)
_HORIZON_S = 30 * 86_400  # established users join within the first 30 days; new users after
_NEW_WINDOW_S = 7 * 86_400
_MAX_IMPRESSIONS = 2**31 - 1
_MAX_USER_TOPICS = 50_000_000  # users * topics: bounds the per-user topic tables
_FALLBACK_CELLS = 1 << 21  # [rows, items] cells per chunk when sampling a slate exactly


@dataclass(frozen=True)
class SimConfig:
    """Size and knobs of a simulated world.

    Attributes:
        users: number of users U (ids 1..U).
        items: number of videos I (ids 1..I); more than ``slate_size``.
        impressions: rows to generate; a multiple of ``slate_size`` (one slate per request).
        seed: random seed (>= 0); the same seed gives identical output.
        slate_size: positions per slate S.
        topics: number of topics T (each gets a video while there are enough; topics
            without videos are never shown).
        new_user_frac: share of users marked ``is_new`` (cold start).
        clickbait_frac: share of videos that are clickbait.
        position_bias: exponent of the examination curve ``position^-position_bias`` (0 = none).
        popularity_exponent: Zipf exponent of video popularity (0 = uniform).
        related_frac: share of slate candidates drawn from the query video's topic.
        popular_frac: share drawn by global popularity; the rest follow the user's interests.
        interest_sharpness: how strongly exposure follows taste (0 = topics uniform).
        policy_sharpness: how strongly the logging policy sorts slates by relevance (0 = random).
        feature_share: share of taste variance explained by the user features, in [0, 1].
        mean_gap_s: mean seconds between a user's consecutive requests.
    """

    users: int = 2000
    items: int = 1000
    impressions: int = 200_000
    seed: int = 0
    slate_size: int = 10
    topics: int = 20
    new_user_frac: float = 0.2
    clickbait_frac: float = 0.1
    position_bias: float = 1.0
    popularity_exponent: float = 1.0
    related_frac: float = 0.3
    popular_frac: float = 0.2
    interest_sharpness: float = 1.5
    policy_sharpness: float = 1.0
    feature_share: float = 0.5
    mean_gap_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("users", "items", "impressions", "seed", "slate_size", "topics"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"SimConfig.{name} must be an integer, got {value!r}")
        for name in ("new_user_frac", "clickbait_frac", "position_bias", "popularity_exponent",
                     "related_frac", "popular_frac", "interest_sharpness", "policy_sharpness",
                     "feature_share", "mean_gap_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value):
                raise ConfigError(f"SimConfig.{name} must be a finite number, got {value!r}")
        for name in ("users", "slate_size", "topics"):
            if getattr(self, name) < 1:
                raise ConfigError(f"SimConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"SimConfig.seed must be >= 0, got {self.seed}")
        if self.items <= self.slate_size:
            raise ConfigError(f"SimConfig.items must be > slate_size={self.slate_size} so a slate of "
                              f"distinct videos can leave out the query video, got {self.items}")
        if self.users * self.topics > _MAX_USER_TOPICS:
            raise ConfigError(f"SimConfig.users * topics must be <= {_MAX_USER_TOPICS:,}, got "
                              f"{self.users} * {self.topics}; use fewer topics")
        if (self.impressions < self.slate_size or self.impressions % self.slate_size
                or self.impressions > _MAX_IMPRESSIONS):
            raise ConfigError(f"SimConfig.impressions must be a positive multiple of slate_size="
                              f"{self.slate_size} (one row per slate position) and at most "
                              f"{_MAX_IMPRESSIONS:,}, got {self.impressions}")
        for name in ("new_user_frac", "clickbait_frac", "related_frac", "popular_frac", "feature_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"SimConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.related_frac + self.popular_frac > 1.0:
            raise ConfigError(f"SimConfig.related_frac + popular_frac must be <= 1, got "
                              f"{self.related_frac} + {self.popular_frac}")
        for name in ("position_bias", "popularity_exponent", "interest_sharpness", "policy_sharpness"):
            if getattr(self, name) < 0:
                raise ConfigError(f"SimConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.mean_gap_s < 1:
            raise ConfigError(f"SimConfig.mean_gap_s must be >= 1 second, got {self.mean_gap_s}")

    @property
    def requests(self) -> int:
        """Number of slates R = impressions / slate_size."""
        return self.impressions // self.slate_size


@dataclass
class SimulatedWorld:
    """A simulated log and the world behind it.

    Attributes:
        impressions: one row per shown (request, position), sorted by user, time, position.
        users: one row per user: ``user_id``, raw features and ``is_new``.
        items: one row per video: ``item_id``, ``title``, ``topic``, ``duration_bucket`` and
            the latent ``quality``, ``click_appeal``, ``is_clickbait``, ``popularity``.
        user_interest: [U, T] float32 true taste; row i is user_id i + 1.
        config: the configuration that generated it.
    """

    impressions: pl.DataFrame
    users: pl.DataFrame
    items: pl.DataFrame
    user_interest: np.ndarray
    config: SimConfig


def simulate(config: SimConfig) -> SimulatedWorld:
    """Generate a world and its impression log.

    Args:
        config: sizes, seed and knobs.

    Returns:
        SimulatedWorld with ``impressions`` of ``config.impressions`` rows (R requests x S
        positions), ``users`` of U rows, ``items`` of I rows and ``user_interest`` [U, T].
    """
    if not isinstance(config, SimConfig):
        raise ConfigError(f"simulate() needs a SimConfig, got {type(config).__name__}")
    rng_users, rng_items, rng_sessions, rng_labels = (
        np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(4))
    cat = _Catalogue(config, rng_items)
    users = _Users(config, rng_users, shown=np.bincount(cat.topic, minlength=config.topics) > 0)
    log = _play_sessions(config, rng_sessions, users, cat)
    return SimulatedWorld(
        impressions=_label(config, rng_labels, users, cat, log),
        users=users.frame(),
        items=cat.frame(),
        user_interest=users.interest,
        config=config,
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


def _codes(u: np.ndarray, probs: tuple[float, ...]) -> np.ndarray:
    """Category codes drawn with ``probs`` from uniforms ``u`` (any shape -> same)."""
    return np.searchsorted(np.cumsum(probs) / sum(probs), u, side="right").clip(0, len(probs) - 1)


class _Users:
    """Users' features, taste [U, T], request counts and start times."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator, shown: np.ndarray) -> None:
        n, t = cfg.users, cfg.topics
        self.age, self.gender = _codes(rng.random(n), _AGE_P), _codes(rng.random(n), _GENDER_P)
        self.region, self.activity = _codes(rng.random(n), _REGION_P), _codes(rng.random(n), _ACTIVITY_P)
        segment = sum(rng.normal(0.0, math.sqrt(var), (len(labels), t))[codes]
                      for var, labels, codes in zip(_SEGMENT_VAR, (AGE_BUCKETS, GENDERS, REGIONS),
                                                    (self.age, self.gender, self.region)))
        logits = math.sqrt(cfg.feature_share) * segment \
            + math.sqrt(1.0 - cfg.feature_share) * rng.normal(0.0, 1.0, (n, t))
        self.interest = (logits - logits.mean(axis=1, keepdims=True)).astype(np.float32)
        self.is_new = np.zeros(n, dtype=bool)
        self.is_new[rng.permutation(n)[: round(cfg.new_user_frac * n)]] = True

        rate = _ACTIVITY_RATE[self.activity] * rng.lognormal(0.0, 0.5, n)
        self.counts = rng.multinomial(cfg.requests, rate / rate.sum()).astype(np.int64)
        self.first_row = np.cumsum(self.counts) - self.counts  # row of a user's first request
        joined = np.where(self.is_new, _HORIZON_S + rng.random(n) * _NEW_WINDOW_S,
                          rng.random(n) * _HORIZON_S)
        self.start = _START_TIME + joined.astype(np.int64)

        # Exposure over the topics that have videos (``shown`` [T]), as one flat CDF: user u's
        # CDF lies in [u, u + 1].
        z = np.where(shown, cfg.interest_sharpness * self.interest.astype(np.float64), -np.inf)
        probs = np.exp(z - z.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        self.topic_probs = probs.astype(np.float32)
        cdf = np.cumsum(probs, axis=1)
        cdf[:, -1] = 1.0
        self._flat_cdf = (cdf + np.arange(n)[:, None]).ravel()
        self._topics = t

    def draw_topics(self, users: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Topics drawn from each user's exposure distribution; users [M], uniforms u [M] -> [M]."""
        idx = np.searchsorted(self._flat_cdf, users + u, side="right")
        idx -= users.astype(np.int64) * self._topics
        return idx.clip(0, self._topics - 1).astype(np.int32)

    def frame(self) -> pl.DataFrame:
        def label(values: tuple[str, ...], codes: np.ndarray) -> pl.Series:
            return pl.Series(np.asarray(values)[codes], dtype=pl.String)

        return pl.DataFrame({
            "user_id": np.arange(1, self.is_new.size + 1, dtype=np.int64),
            "age_bucket": label(AGE_BUCKETS, self.age),
            "gender": label(GENDERS, self.gender),
            "region": label(REGIONS, self.region),
            "activity": label(ACTIVITY, self.activity),
            "is_new": self.is_new,
        })


class _Catalogue:
    """Videos and popularity-weighted sampling within a topic or over the whole catalogue."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator) -> None:
        n, t = cfg.items, cfg.topics
        topic = np.searchsorted(np.cumsum(rng.dirichlet(np.full(t, 2.0))), rng.random(n), side="right")
        covered = min(n, t)
        topic[rng.permutation(n)[:covered]] = np.arange(covered)  # each topic a video, if enough
        self.topic = topic.clip(0, t - 1).astype(np.int32)
        self.clickbait = np.zeros(n, dtype=bool)
        self.clickbait[rng.permutation(n)[: round(cfg.clickbait_frac * n)]] = True
        quality = rng.normal(0.0, 1.0, n)
        appeal = 0.3 * quality + math.sqrt(0.91) * rng.normal(0.0, 1.0, n)
        k = int(self.clickbait.sum())
        quality[self.clickbait] = rng.normal(-1.5, 0.5, k)
        appeal[self.clickbait] = rng.normal(2.0, 0.5, k)
        self.quality, self.appeal = quality.astype(np.float32), appeal.astype(np.float32)
        u = rng.random(n)
        self.duration = np.where(self.clickbait, _codes(u, _CLICKBAIT_DURATION_P), _codes(u, _DURATION_P))
        buzz = 0.6 * appeal + 0.3 * quality + rng.normal(0.0, 1.0, n)
        rank = np.empty(n, dtype=np.float64)
        rank[np.argsort(-buzz, kind="stable")] = np.arange(1, n + 1)
        pop = rank ** -cfg.popularity_exponent
        self.popularity = pop / pop.sum()

        # Items sorted by topic with their cumulative popularity; "topic" t == T means all items.
        self.by_topic = np.argsort(self.topic, kind="stable").astype(np.int32)
        self.cum = np.cumsum(self.popularity[self.by_topic])
        bounds = np.searchsorted(self.topic[self.by_topic], np.arange(t + 1))
        self.lo_idx = np.append(bounds[:-1], 0)
        self.hi_idx = np.append(bounds[1:], n) - 1
        before = np.concatenate([[0.0], self.cum])
        self.lo = np.append(before[bounds[:-1]], 0.0)
        self.mass = np.append(before[bounds[1:]] - before[bounds[:-1]], self.cum[-1])
        self.number = np.empty(n, dtype=np.int64)  # 1-based number of a video within its topic
        self.number[self.by_topic] = np.arange(n) - bounds[self.topic[self.by_topic]] + 1

    def pick(self, topic: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Videos drawn by popularity within ``topic`` (T = whole catalogue); any shape -> same."""
        pos = np.searchsorted(self.cum, self.lo[topic] + u * self.mass[topic], side="right")
        return self.by_topic[pos.clip(self.lo_idx[topic], self.hi_idx[topic])]

    def frame(self) -> pl.DataFrame:
        ids = np.arange(1, self.topic.size + 1, dtype=np.int64)
        return pl.DataFrame({
            "item_id": ids,
            "topic": self.topic.astype(np.int64),
            "number": self.number,
            "duration_bucket": pl.Series(np.asarray(DURATIONS)[self.duration], dtype=pl.String),
            "quality": self.quality,
            "click_appeal": self.appeal,
            "is_clickbait": self.clickbait,
            "popularity": self.popularity.astype(np.float32),
        }).select(
            "item_id",
            pl.format("topic-{} video {}", "topic", "number").alias("title"),
            "topic", "duration_bucket", "quality", "click_appeal", "is_clickbait", "popularity",
        )


@dataclass
class _Log:
    """Sessions as played: R requests in (user, rank) order, S positions each."""

    user: np.ndarray  # [R] int32, 0-based
    query: np.ndarray  # [R] int32, 0-based video or -1 = none
    item: np.ndarray  # [R, S] int32, 0-based, in position order
    aff: np.ndarray  # [R, S] float32 interest of the user in the video's topic
    p_rel: np.ndarray  # [R, S] float32
    p_click: np.ndarray  # [R, S] float32
    click: np.ndarray  # [R, S] bool


def _play_sessions(cfg: SimConfig, rng: np.random.Generator, users: _Users, cat: _Catalogue) -> _Log:
    """Play every user's requests in time order, one request rank at a time (see module doc)."""
    r, s = cfg.requests, cfg.slate_size
    counts, first_row = users.counts, users.first_row
    order = np.argsort(-counts, kind="stable").astype(np.int32)  # most active first: active = prefix
    active = cfg.users - np.cumsum(np.bincount(counts))  # active[k] = users with more than k requests
    exam = (np.arange(1, s + 1, dtype=np.float64) ** -cfg.position_bias).astype(np.float32)
    log = _Log(
        user=np.repeat(np.arange(cfg.users, dtype=np.int32), counts),
        query=np.empty(r, dtype=np.int32),
        item=np.empty((r, s), dtype=np.int32),
        aff=np.empty((r, s), dtype=np.float32),
        p_rel=np.empty((r, s), dtype=np.float32),
        p_click=np.empty((r, s), dtype=np.float32),
        click=np.empty((r, s), dtype=bool),
    )
    last_click = np.full(cfg.users, -1, dtype=np.int32)  # per user in `order`, -1 = none yet
    for k in range(int(counts.max())):
        n = int(active[k])
        who = order[:n]
        rows = first_row[who] + k
        query = last_click[:n].copy() if k else np.full(n, -1, dtype=np.int32)
        if k:  # not clicked anything yet: a video found elsewhere, drawn from their interests
            lost = np.flatnonzero(query < 0)
            query[lost] = cat.pick(users.draw_topics(who[lost], rng.random(lost.size)), rng.random(lost.size))
        items = _draw_slates(cfg, rng, users, cat, who, query)

        has_query = query >= 0
        query_topic = np.where(has_query, cat.topic[query.clip(0)], -1)
        topic = cat.topic[items]
        aff = users.interest[who[:, None], topic]
        logit = A0 + A1 * aff + A2 * cat.appeal[items] + A3 * (topic == query_topic[:, None])
        rank = np.argsort(-(cfg.policy_sharpness * logit + rng.gumbel(size=(n, s))), axis=1, kind="stable")
        items, aff, logit = (np.take_along_axis(a, rank, axis=1) for a in (items, aff, logit))
        p_rel = _sigmoid(logit).astype(np.float32)
        p_click = exam * p_rel
        click = rng.random((n, s), dtype=np.float32) < p_click

        clicked = np.flatnonzero(click.any(axis=1))
        last_pos = s - 1 - np.argmax(click[clicked, ::-1], axis=1)  # the video watched last
        last_click[clicked] = items[clicked, last_pos]
        log.query[rows], log.item[rows], log.aff[rows] = query, items, aff
        log.p_rel[rows], log.p_click[rows], log.click[rows] = p_rel, p_click, click
    return log


def _draw_slates(cfg: SimConfig, rng: np.random.Generator, users: _Users, cat: _Catalogue,
                 who: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Distinct videos for each request, never its query video.

    Args:
        who: [N] 0-based users.
        query: [N] 0-based query videos, -1 = none.

    Returns:
        [N, S] int32 videos, in draw order.
    """
    s = cfg.slate_size
    width = 2 * s + 2
    slates = np.empty((who.size, s), dtype=np.int32)
    todo = np.arange(who.size)
    for _ in range(3):  # draw with replacement, keep the first S distinct; redraw the few short rows
        cand = _candidates(cfg, rng, users, cat, who[todo], query[todo], width)
        order = np.argsort(cand, axis=1, kind="stable")
        sorted_ = np.take_along_axis(cand, order, axis=1)
        first = np.ones_like(cand, dtype=bool)
        first[:, 1:] = sorted_[:, 1:] != sorted_[:, :-1]
        keep = np.empty_like(first)
        np.put_along_axis(keep, order, first, axis=1)
        keep &= cand != query[todo, None]
        taken = np.cumsum(keep, axis=1)
        full = taken[:, -1] >= s
        slates[todo[full]] = cand[full][(keep & (taken <= s))[full]].reshape(-1, s)
        todo = todo[~full]
        if not todo.size:
            return slates
    slates[todo] = _exact_slates(cfg, rng, users, cat, who[todo], query[todo])
    return slates


def _candidates(cfg: SimConfig, rng: np.random.Generator, users: _Users, cat: _Catalogue,
                who: np.ndarray, query: np.ndarray, width: int) -> np.ndarray:
    """[N, width] videos drawn with replacement from the slate mixture."""
    n, t = who.size, cfg.topics
    arm = rng.random((n, width))
    related = (arm < cfg.related_frac) & (query >= 0)[:, None]
    mine = ~related & (arm < 1.0 - cfg.popular_frac)
    topic = np.full((n, width), t, dtype=np.int32)  # T = the whole catalogue (popularity arm)
    topic[related] = np.broadcast_to(cat.topic[query.clip(0)][:, None], (n, width))[related]
    rows = np.broadcast_to(who[:, None], (n, width))[mine]
    topic[mine] = users.draw_topics(rows, rng.random(rows.size))
    return cat.pick(topic, rng.random((n, width)))


def _exact_slates(cfg: SimConfig, rng: np.random.Generator, users: _Users, cat: _Catalogue,
                  who: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Slates sampled without replacement from the exact mixture (Gumbel top-k); [M] -> [M, S]."""
    s, n_items = cfg.slate_size, cat.topic.size
    in_topic = cat.popularity / cat.mass[cat.topic]  # p(video | its topic)
    out = np.empty((who.size, s), dtype=np.int32)
    step = max(1, _FALLBACK_CELLS // n_items)
    for lo in range(0, who.size, step):
        u, q = who[lo: lo + step], query[lo: lo + step]
        has_q = (q >= 0)[:, None]
        related = cfg.related_frac * has_q
        w = (related * (cat.topic[None, :] == cat.topic[q.clip(0)][:, None]) * in_topic
             + (1.0 - related - cfg.popular_frac) * users.topic_probs[u][:, cat.topic] * in_topic
             + cfg.popular_frac * cat.popularity)
        keys = np.log(w + 1e-12) + rng.gumbel(size=w.shape)  # zero-weight videos only to fill up
        keys[np.flatnonzero(has_q[:, 0]), q[q >= 0]] = -np.inf
        out[lo: lo + step] = np.argpartition(-keys, s - 1, axis=1)[:, :s]
    return out


def _label(cfg: SimConfig, rng: np.random.Generator, users: _Users, cat: _Catalogue,
           log: _Log) -> pl.DataFrame:
    """Likes, watch fractions, ratings, times and ids; the impressions frame."""
    r, s = cfg.requests, cfg.slate_size
    item, click = log.item.ravel(), log.click.ravel()
    p_like = _sigmoid(B0 + B1 * log.aff.ravel() + B2 * cat.quality[item]).astype(np.float32)
    like = click & (rng.random(item.size, dtype=np.float32) < p_like)

    hit = np.flatnonzero(click)
    hit_item, hit_aff = item[hit], log.aff.ravel()[hit].astype(np.float64)
    mean = _sigmoid(C0 + C1 * hit_aff + C2 * cat.quality[hit_item] + _DURATION_WATCH[cat.duration[hit_item]])
    mean = mean.clip(1e-3, 1.0 - 1e-3)
    watch = np.zeros(item.size, dtype=np.float32)
    watch[hit] = rng.beta(_WATCH_CONCENTRATION * mean, _WATCH_CONCENTRATION * (1.0 - mean)).clip(0.0, 1.0)
    stars = R0 + R1 * like[hit] + R2 * (hit_aff + cat.quality[hit_item]) + R_NOISE * rng.normal(size=hit.size)
    rating = np.full(item.size, np.nan, dtype=np.float32)
    rating[hit] = np.rint(stars).clip(1, 5)

    # Times: each user starts at their join time; gaps of at least a second.
    gaps = 1 + rng.exponential(cfg.mean_gap_s, r).astype(np.int64)
    elapsed = np.cumsum(gaps)
    active = users.counts > 0
    elapsed -= np.repeat((elapsed - gaps)[users.first_row[active]], users.counts[active])  # per user
    timestamp = users.start[log.user] + elapsed
    request_id = np.empty(r, dtype=np.int64)
    request_id[np.lexsort((log.user, timestamp))] = np.arange(1, r + 1)

    def per_row(a: np.ndarray) -> np.ndarray:
        return np.repeat(a.astype(np.int64), s)

    return pl.DataFrame({
        "user_id": per_row(log.user + 1),
        "item_id": item.astype(np.int64) + 1,
        "query_item_id": per_row(log.query + 1),
        "request_id": per_row(request_id),
        "timestamp": per_row(timestamp),
        "position": np.tile(np.arange(1, s + 1, dtype=np.int16), r),
        "click": click.view(np.int8),
        "like": like.view(np.int8),
        "rating": pl.Series(rating, nan_to_null=True),
        "watch_fraction": watch,
        "true_p_click": log.p_click.ravel(),
        "true_p_relevance": log.p_rel.ravel(),
        "true_p_like": p_like,
        "true_p_like_uncond": log.p_click.ravel() * p_like,
    })
