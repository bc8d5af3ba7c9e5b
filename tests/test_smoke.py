def test_campaign(campaign):
    assert campaign.slug == "demo"
