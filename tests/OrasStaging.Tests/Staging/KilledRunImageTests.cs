using OrasStaging.Staging;

namespace OrasStaging.Tests.Staging;

/// <summary>Which image partial a resumed install writes into: only the target's own, named by a prefix it reuses.</summary>
public class KilledRunImageTests
{
    private static readonly ResolvedLayer Layer = new()
    {
        Reference = "oras://127.0.0.1:5000/lab/disk:latest",
        Registry = "127.0.0.1:5000",
        Repository = "lab/disk",
        Digest = "sha256:".PadRight(71, 'a'),
        Size = 10_000_000,
        MediaType = "application/vnd.nosi.disk-image.layer.v1+gzip",
    };

    /// <summary>A prefix holding <paramref name="offset"/> bytes whose record names <paramref name="image"/>.</summary>
    private static ResumePrefix Kept(string target, string? image, long offset, ResolvedLayer? of = null)
    {
        var prefix = ResumePrefix.For(target, null, of ?? Layer);
        File.WriteAllBytes(prefix.Path, new byte[6_000_000]);
        prefix.ImagePartial = image;
        prefix.WriteRecord(of ?? Layer, offset);
        return prefix;
    }

    [Fact]
    public void TheTargetsOwnPartialNamedByAReusedPrefixIsTaken()
    {
        using var dir = new TempFolder();
        string target = Path.Combine(dir.Path, "disk.qcow2");
        string partial = target + ".0a1b2c3d.partial";
        File.WriteAllBytes(partial, new byte[4096]);

        Assert.Equal(partial, Kept(target, "disk.qcow2.0a1b2c3d.partial", 4_000_000).KilledRunImage(target, Layer));
    }

    [Theory]
    [InlineData("../disk.qcow2.0a1b2c3d.partial")]   // a path, not a name beside the target
    [InlineData("other.qcow2.0a1b2c3d.partial")]     // another target's partial
    [InlineData("disk.qcow2")]                       // the image itself
    [InlineData("disk.qcow2.9f9f9f9f.partial")]      // a name the target could have, but no such file
    [InlineData(null)]                               // a record from before the image was named
    public void AnythingElseIsNot(string? named)
    {
        using var dir = new TempFolder();
        string target = Path.Combine(dir.Path, "disk.qcow2");
        foreach (string file in new[] { "disk.qcow2", "other.qcow2.0a1b2c3d.partial", "disk.qcow2.0a1b2c3d.partial" })
        {
            File.WriteAllBytes(Path.Combine(dir.Path, file), new byte[4096]);
        }

        Directory.CreateDirectory(Path.Combine(dir.Path, "sub"));
        string inSub = Path.Combine(dir.Path, "sub", "disk.qcow2");
        Assert.Null(Kept(target, named, 4_000_000).KilledRunImage(target, Layer));
        Assert.Null(Kept(inSub, named, 4_000_000).KilledRunImage(inSub, Layer));
    }

    [Fact]
    public void APrefixNotReusedBringsNoImage()
    {
        using var dir = new TempFolder();
        string target = Path.Combine(dir.Path, "disk.qcow2");
        File.WriteAllBytes(target + ".0a1b2c3d.partial", new byte[4096]);
        var other = Layer with { Digest = "sha256:".PadRight(71, 'b') };

        // Nothing received: the run starts over, and so does the image.
        Assert.Null(Kept(target, "disk.qcow2.0a1b2c3d.partial", 0).KilledRunImage(target, Layer));
        // Another blob's prefix: not this image's partial, whatever it is called.
        Assert.Null(Kept(target, "disk.qcow2.0a1b2c3d.partial", 4_000_000, other).KilledRunImage(target, Layer));
    }
}
