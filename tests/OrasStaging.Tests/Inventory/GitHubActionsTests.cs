using OrasStaging.Inventory;

namespace OrasStaging.Tests.Inventory;

public class GitHubActionsTests
{
    [Theory]
    [InlineData("plain", "plain")]
    [InlineData("100%", "100%25")]
    [InlineData("%0A", "%250A")]
    [InlineData("a\r\nb", "a%0D%0Ab")]
    [InlineData("tag:1,2", "tag:1,2")]
    [InlineData("bell\u0007esc\u001b[31m", "bellesc[31m")]
    [InlineData("sep\u2028x\u0085y", "sepxy")]
    public void DataEscaping(string input, string expected) => Assert.Equal(expected, GitHubActions.EscapeData(input));

    [Theory]
    [InlineData("ghcr.io:443/a,b", "ghcr.io%3A443/a%2Cb")]
    [InlineData("50%\n", "50%25%0A")]
    public void PropertyEscaping(string input, string expected) => Assert.Equal(expected, GitHubActions.EscapeProperty(input));

    [Fact]
    public void ErrorLineCannotBeSplitIntoASecondCommand()
    {
        // A tag or annotation from a registry trying to smuggle a command onto its own line.
        string hostile = "bad\n::add-mask::x\r\n::set-output name=a::b";
        string line = GitHubActions.Error("Cannot stage " + hostile, title: "Install-DiskImageFromOras: " + hostile, file: "a,b:c");
        Assert.DoesNotContain('\n', line);
        Assert.DoesNotContain('\r', line);
        Assert.StartsWith("::error title=Install-DiskImageFromOras%3A bad%0A%3A%3Aadd-mask%3A%3Ax%0D%0A%3A%3Aset-output name=a%3A%3Ab,file=a%2Cb%3Ac::", line);
        Assert.EndsWith("::Cannot stage bad%0A::add-mask::x%0D%0A::set-output name=a::b", line);
    }

    [Fact]
    public void ErrorWithoutPropertiesAndWithALine()
    {
        Assert.Equal("::error::it failed", GitHubActions.Error("it failed"));
        Assert.Equal("::error file=x.toml,line=12::bad", GitHubActions.Error("bad", file: "x.toml", line: 12));
        Assert.Equal("::warning::w%25", GitHubActions.Warning("w%"));
    }

    [Fact]
    public void GroupEscapesItsTitle()
    {
        Assert.Equal("::group::Staging disk%0A::endgroup::", GitHubActions.Group("Staging disk\n::endgroup::"));
        Assert.Equal("::endgroup::", GitHubActions.EndGroup);
    }

    [Theory]
    [InlineData("a|b", @"a\|b")]
    [InlineData(@"trailing\", @"trailing\\")]
    [InlineData(@"a\|b", @"a\\\|b")]
    [InlineData("line1\nline2\r\n", "line1 line2")]
    [InlineData("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;")]
    [InlineData("R&D", "R&amp;D")]
    [InlineData(null, "")]
    public void CellEscaping(string? input, string expected) => Assert.Equal(expected, GitHubActions.EscapeCell(input));

    [Fact]
    public void TableHasOneRowPerImageAndHostileCellsStayInTheirColumn()
    {
        var images = new[]
        {
            new StagedImage { Name = "ubuntu", Path = "/img/u.qcow2", Format = "qcow2", Digest = "sha256:aa", Reference = "oras://ghcr.io/a/u:1" },
            new StagedImage { Path = "/img/x|y.raw", Format = "raw", Reference = "oras://r/x:evil|\n| injected |", Skipped = true, SkipReason = "stamp matches" },
        };
        string table = GitHubActions.StagedImagesSummary(images);
        string[] lines = table.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("### Staged disk images", lines[0]);
        Assert.Equal("| Name | Path | Format | Digest | Reference | Result |", lines[1]);
        Assert.Equal("| --- | --- | --- | --- | --- | --- |", lines[2]);
        Assert.Equal("| ubuntu | /img/u.qcow2 | qcow2 | sha256:aa | oras://ghcr.io/a/u:1 | staged |", lines[3]);
        Assert.Equal(@"| x\|y.raw | /img/x\|y.raw | raw |  | oras://r/x:evil\| \| injected \| | skipped: stamp matches |", lines[4]);
        Assert.Equal(5, lines.Length);
    }

    [Fact]
    public void SummaryIsAppendedToTheStepSummaryFile()
    {
        string path = Path.Combine(Path.GetTempPath(), "orasstaging-summary-" + Guid.NewGuid().ToString("n")[..8] + ".md");
        try
        {
            File.WriteAllText(path, "earlier step\n");
            Func<string, string?> env = k => k == "GITHUB_STEP_SUMMARY" ? path : null;
            Assert.True(GitHubActions.TryAppendSummary("| a |\n", out var error, env));
            Assert.Null(error);
            Assert.True(GitHubActions.TryAppendSummary("| b |\n", out _, env));
            Assert.Equal("earlier step\n| a |\n| b |\n", File.ReadAllText(path));

            Assert.False(GitHubActions.TryAppendSummary("x", out error, _ => null));
            Assert.Contains("GITHUB_STEP_SUMMARY", error);
            Assert.False(GitHubActions.TryAppendSummary("x", out error, _ => Path.Combine(path, "not-a-folder", "f.md")));
            Assert.Contains("Cannot append", error);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("true", true)]
    [InlineData("false", false)]
    [InlineData(null, false)]
    [InlineData("TRUE", false)]
    public void ActiveOnlyWhenGitHubSaysSo(string? value, bool expected) =>
        Assert.Equal(expected, GitHubActions.IsActive(k => k == "GITHUB_ACTIONS" ? value : null));
}
