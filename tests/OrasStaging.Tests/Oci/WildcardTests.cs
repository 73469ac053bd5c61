namespace OrasStaging.Tests.Oci;

public class WildcardTests
{
    // Every expected value here is what PowerShell 7's -like answers for the same text and pattern.
    [Theory]
    [InlineData("b", "[!a]", false)]
    [InlineData("!", "[!a]", true)]
    [InlineData("a", "[!a]", true)]
    [InlineData("B", "[a-c]", true)]
    [InlineData("d", "[a-c]", false)]
    [InlineData("-", "[a-]", true)]
    [InlineData("*", "`*", true)]
    [InlineData("a", "`*", false)]
    [InlineData("A.QCOW2", "*.qcow2", true)]
    [InlineData("ab", "a?", true)]
    [InlineData("a", "a?", false)]
    [InlineData("abc", "a*c", true)]
    [InlineData("abd", "a*c", false)]
    [InlineData("a]", "a`]", true)]
    [InlineData("x", "[`]x]", true)]
    [InlineData("]", "[`]x]", true)]
    [InlineData("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.*", true)]
    [InlineData("", "", true)]
    [InlineData("", "*", true)]
    [InlineData("aaa", "a*a*a", true)]
    [InlineData("bookworm-amd64", "*-[a-z]md64", true)]
    public void Matches_as_PowerShell_like_does(string text, string pattern, bool expected) =>
        Assert.Equal(expected, Wildcard.IsMatch(pattern, text));

    [Theory]
    [InlineData("x[", "x[", true)]
    [InlineData("x[]", "x[]", true)]
    [InlineData("xa", "x[", false)]
    public void A_bracket_PowerShell_would_reject_is_a_literal(string text, string pattern, bool expected) =>
        Assert.Equal(expected, Wildcard.IsMatch(pattern, text));

    [Fact]
    public void Selection_and_the_cijoe_filter_agree_on_negation_brackets()
    {
        Assert.True(OrasStaging.Staging.CijoeConfig.Matches("!x", new[] { "[!a]x" }, null));
        Assert.False(OrasStaging.Staging.CijoeConfig.Matches("bx", new[] { "[!a]x" }, null));
        var layers = new[]
        {
            new OrasDescriptor { Title = "!.img", MediaType = "application/octet-stream", Digest = "sha256:" + new string('0', 64), Size = 1 },
            new OrasDescriptor { Title = "b.img", MediaType = "application/octet-stream", Digest = "sha256:" + new string('1', 64), Size = 2 },
        };
        Assert.Equal("!.img", OrasStaging.Oci.Selection.ChooseLayer(layers, "[!a].img", null, "r").Title);
    }
}
