import pytest
import torch
from model_fixtures import make_x

from recsys.errors import UnknownIdError
from recsys.models import FeatureEmbedding


def test_shape_and_field_order(schema):
    emb = FeatureEmbedding(schema, dim=4)
    e = emb(make_x(schema, 7))
    assert e.shape == (7, 6, 4)
    assert emb.out_dim == 24
    assert emb.fields == ("f_user_id", "f_user_age", "f_item_id", "f_query_id", "f_item_genres", "f_query_genres")


def test_shared_vocab_is_one_table(schema):
    emb = FeatureEmbedding(schema, dim=4)
    x = make_x(schema, 5)
    x[:, schema.slice("f_query_id")] = x[:, schema.slice("f_item_id")]
    x[:, schema.slice("f_query_genres")] = x[:, schema.slice("f_item_genres")]
    e = emb(x)
    item, query = emb.fields.index("f_item_id"), emb.fields.index("f_query_id")
    torch.testing.assert_close(e[:, item], e[:, query], rtol=0, atol=0)
    genres, qgenres = emb.fields.index("f_item_genres"), emb.fields.index("f_query_genres")
    torch.testing.assert_close(e[:, genres], e[:, qgenres], rtol=0, atol=0)
    assert set(emb.vocab_offsets) == {"user", "age", "item", "genre"}
    assert emb.weight.shape[0] == 6 + 4 + 9 + 5
    # a query id trains the candidate item's row
    x = make_x(schema, 1)
    x[0, schema.slice("f_query_id")] = 7
    x[0, schema.slice("f_item_id")] = 3
    emb(x)[0, query].sum().backward()
    grad = emb.weight.grad[emb.vocab_offsets["item"] :][:9]
    assert grad[7].abs().sum() > 0 and grad[3].abs().sum() == 0


def test_multi_valued_mean_ignores_pad(schema):
    emb = FeatureEmbedding(schema, dim=4)
    col = emb.fields.index("f_item_genres")
    genre = emb.table("genre")
    x = make_x(schema, 4)
    span = schema.slice("f_item_genres")
    x[:, span] = torch.tensor([[2, 3, 0], [2, 0, 3], [3, 2, 2], [0, 0, 0]])
    e = emb(x)[:, col]
    torch.testing.assert_close(e[0], (genre[2] + genre[3]) / 2)
    torch.testing.assert_close(e[1], e[0])  # where the PAD sits does not matter
    torch.testing.assert_close(e[2], (genre[3] + 2 * genre[2]) / 3)
    assert torch.equal(e[3], torch.zeros(4))  # only PAD: zeros
    e.sum().backward()
    assert emb.weight.grad[emb.vocab_offsets["genre"]].abs().sum() == 0  # PAD gets no gradient


def test_single_valued_none_has_a_learned_row(schema):
    emb = FeatureEmbedding(schema, dim=4)
    x = make_x(schema, 1)
    x[0, schema.slice("f_query_id")] = 0  # no query item yet
    e = emb(x)[0, emb.fields.index("f_query_id")]
    torch.testing.assert_close(e, emb.table("item")[0])
    assert e.abs().sum() > 0


def test_sides_and_merge_rebuild_the_full_embedding(schema):
    emb = FeatureEmbedding(schema, dim=4)
    x = make_x(schema, 6)
    request = x[:1].clone()
    x[:, schema.slice("f_user_id")] = request[:, schema.slice("f_user_id")]
    x[:, schema.slice("f_user_age")] = request[:, schema.slice("f_user_age")]
    x[:, schema.slice("f_query_id")] = request[:, schema.slice("f_query_id")]
    x[:, schema.slice("f_query_genres")] = request[:, schema.slice("f_query_genres")]
    user = emb.embed(request, ("user", "query"))
    items = emb.embed(x, ("item",))
    assert user.shape == (1, 4, 4) and items.shape == (6, 2, 4)
    torch.testing.assert_close(emb.merge({("user", "query"): user, ("item",): items}), emb(x))
    with pytest.raises(ValueError, match="every field exactly once"):
        emb.merge({("user",): user})
    with pytest.raises(ValueError, match="unknown side"):
        emb.embed(x, ("users",))


def test_wrong_width_names_both_numbers(schema):
    emb = FeatureEmbedding(schema)
    with pytest.raises(ValueError, match=r"x has 11 columns but the schema of tiny has 10"):
        emb(torch.zeros(2, 11, dtype=torch.long))
    with pytest.raises(ValueError, match="integer ids"):
        emb(torch.zeros(2, 10))


def test_out_of_vocabulary_id_is_named(schema):
    emb = FeatureEmbedding(schema)
    x = make_x(schema, 3)
    x[1, schema.slice("f_item_id")] = 9
    with pytest.raises(UnknownIdError, match=r"f_item_id .* id 9 outside its vocabulary \[0, 9\)"):
        emb(x)
    x = make_x(schema, 3)
    x[2, schema.slice("f_user_age")] = -1
    with pytest.raises(UnknownIdError, match="f_user_age"):
        emb(x)
