using OrasStaging.Staging;

namespace OrasStaging.Tests.Staging;

/// <summary>The free-space check before a download counts only what is still to come (issue 12, resume).</summary>
public class FreeSpaceRuleTests
{
    private static ResolvedLayer Layer(string digest = "sha256:" + "ab", long size = 10_000_000) => new()
    {
        Reference = "oras://127.0.0.1:5000/lab/disk:latest",
        Registry = "127.0.0.1:5000",
        Repository = "lab/disk",
        Digest = digest.PadRight(71, '0'),
        Size = size,
        MediaType = "application/vnd.nosi.disk-image.layer.v1+gzip",
    };

    private static ResumePrefix KeptPrefix(string imagePath, ResolvedLayer recordOf, long fileBytes, long offset)
    {
        var prefix = ResumePrefix.For(imagePath, null, recordOf);
        File.WriteAllBytes(prefix.Path, new byte[fileBytes]);
        prefix.WriteRecord(recordOf, offset);
        return prefix;
    }

    [Fact]
    public void APrefixOfTheSameBlobHoldsItsRecordedBytes()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.qcow2");
        var layer = Layer();
        var prefix = KeptPrefix(image, layer, fileBytes: 6_000_000, offset: 4_000_000);

        // The record's watermark, not the file's length: bytes past it were never verified as received in order.
        Assert.Equal(4_000_000, prefix.ReusableBytes(layer));
    }

    [Fact]
    public void APrefixOfAnotherBlobHoldsNothing()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.qcow2");
        var prefix = KeptPrefix(image, Layer("sha256:cd"), fileBytes: 6_000_000, offset: 6_000_000);

        Assert.Equal(0, prefix.ReusableBytes(Layer()));
    }

    [Fact]
    public void TheBytesAPrefixHoldsAreNotNeededAgain()
    {
        var layer = Layer();
        long image = layer.Size + InstallFlow.SpaceMargin;

        // Beside the image: the image plus the rest of the blob.
        Assert.Equal((image + layer.Size, 0L), InstallFlow.SpaceNeeded(layer, download: true, keepBlob: false, held: 0));
        Assert.Equal((image + layer.Size - 4_000_000, 0L), InstallFlow.SpaceNeeded(layer, download: true, keepBlob: false, held: 4_000_000));

        // With -KeepBlob the prefix lives in the kept-blob folder.
        Assert.Equal((image, layer.Size - 4_000_000 + InstallFlow.SpaceMargin), InstallFlow.SpaceNeeded(layer, download: true, keepBlob: true, held: 4_000_000));

        // A whole prefix needs no more blob space; a kept blob read from the cache needs none either.
        Assert.Equal((image, 0L), InstallFlow.SpaceNeeded(layer, download: true, keepBlob: false, held: layer.Size));
        Assert.Equal((image, 0L), InstallFlow.SpaceNeeded(layer, download: false, keepBlob: true, held: 0));
    }
}
