using OrasStaging.Commands.Completion;

namespace OrasStaging.Tests;

public class TagQueryTests
{
    [Theory]
    [InlineData("oras://ghcr.io/safl/nosi/debian-bookworm-amd64:la", "oras://ghcr.io/safl/nosi/debian-bookworm-amd64", "ghcr.io", "safl/nosi/debian-bookworm-amd64", "la")]
    [InlineData("oras://ghcr.io/safl/nosi/debian-bookworm-amd64", "oras://ghcr.io/safl/nosi/debian-bookworm-amd64", "ghcr.io", "safl/nosi/debian-bookworm-amd64", "")]
    [InlineData("127.0.0.1:5000/lab/debian:", "127.0.0.1:5000/lab/debian", "127.0.0.1:5000", "lab/debian", "")]
    [InlineData("ORAS://localhost:5000/lab/debian:v1.", "ORAS://localhost:5000/lab/debian", "localhost:5000", "lab/debian", "v1.")]
    public void ParsesRegistryRepositoryAndTagPrefix(string word, string prefix, string host, string repository, string tagPrefix)
    {
        Assert.True(TagQuery.TryParse(word, out var query));
        Assert.Equal(prefix, query.Prefix);
        Assert.Equal(host, query.Host);
        Assert.Equal(repository, query.Repository);
        Assert.Equal(tagPrefix, query.TagPrefix);
    }

    [Theory]
    [InlineData("")]
    [InlineData("oras://")]
    [InlineData("oras://ghcr.io")]
    [InlineData("oras://ghcr.io/")]
    [InlineData("oras://ghcr.io/safl/")]
    [InlineData("oras://ghcr.io/Safl/nosi:latest")]
    [InlineData("oras://ghcr.io/safl/nosi@sha256:1a")]
    [InlineData("debian:latest")]
    [InlineData("safl/nosi:latest")]
    [InlineData("oras://ghcr.io/safl/nosi:-bad")]
    public void DeclinesWhatIsNotARepositoryYet(string word) => Assert.False(TagQuery.TryParse(word, out _));
}
