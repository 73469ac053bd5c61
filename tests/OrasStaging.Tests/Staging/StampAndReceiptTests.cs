using OrasStaging.DiskImages;
using OrasStaging.Staging;

namespace OrasStaging.Tests.Staging;

public class StampAndReceiptTests
{
    [Fact]
    public void StampIsOneLineWithoutNewline()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.qcow2");
        StampFile.Write(image, "sha256:abc");
        Assert.Equal("sha256:abc", File.ReadAllText(image + ".digest"));
        Assert.Equal(new[] { "disk.qcow2.digest" }, dir.Files());
    }

    [Theory]
    [InlineData("sha256:abc\n", "sha256:abc")]
    [InlineData("  sha256:abc \r\n", "sha256:abc")]
    [InlineData("\n", null)]
    public void StampIsReadTrimmed(string content, string? expected)
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.qcow2");
        File.WriteAllText(image + ".digest", content);
        Assert.Equal(expected, StampFile.Read(image));
    }

    [Fact]
    public void MissingStampReadsAsNull()
    {
        using var dir = new TempFolder();
        Assert.Null(StampFile.Read(Path.Combine(dir.Path, "none.qcow2")));
    }

    [Fact]
    public void ReceiptRoundTripsWithCamelCaseNames()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.qcow2");
        var receipt = new Receipt
        {
            Reference = "oras://r/x:latest",
            Registry = "r",
            Repository = "x",
            ManifestDigest = "sha256:m",
            Digest = "sha256:d",
            MediaType = "application/gzip",
            Title = "x.img.gz",
            Format = DiskImageFormat.Qcow2,
            VirtualSize = 123,
            Time = DateTimeOffset.UnixEpoch,
            ModuleVersion = "0.1.0",
        };
        receipt.Write(image);
        string json = File.ReadAllText(image + ".oras.json");
        Assert.Contains("\"manifestDigest\": \"sha256:m\"", json);
        Assert.Contains("\"digest\": \"sha256:d\"", json);
        Assert.Contains("\"format\": \"qcow2\"", json);
        Assert.Equal(receipt, Receipt.Read(image));
    }

    [Fact]
    public void BrokenReceiptReadsAsNull()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.qcow2");
        File.WriteAllText(image + ".oras.json", "{ not json");
        Assert.Null(Receipt.Read(image));
    }
}
