using OrasStaging.Inventory;
using OrasStaging.Staging;

namespace OrasStaging.Tests.Inventory;

public sealed class StagedInventoryTests : IDisposable
{
    private const string A = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    private const string B = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    private static readonly DateTimeOffset When = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);

    private readonly string _root = Path.Combine(Path.GetTempPath(), "orasstaging-inventory-" + Guid.NewGuid().ToString("n")[..8]);

    public StagedInventoryTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string Image(string relative, bool create = true)
    {
        string path = Path.Combine(_root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        if (create)
        {
            File.WriteAllBytes(path, new byte[] { 1, 2, 3 });
        }

        return path;
    }

    private static void Stamp(string image, string text) => File.WriteAllText(image + ".digest", text);

    private static void ReceiptFor(string image, string digest, string version = "0.1.0") => new Receipt
    {
        Reference = "oras://ghcr.io/acme/disk:1",
        Registry = "ghcr.io",
        Repository = "acme/disk",
        ManifestDigest = B,
        Digest = digest,
        Format = OrasStaging.DiskImages.DiskImageFormat.Qcow2,
        Time = When,
        ModuleVersion = version,
    }.Write(image);

    private IReadOnlyList<StagedDiskImageInfo> Find(string? path = null, bool recurse = false, Func<string, string?>? formatOf = null) =>
        StagedInventory.Find(path ?? _root, recurse, "0.2.0", formatOf);

    [Fact]
    public void ReceiptAndStampGiveTheFullRecord()
    {
        string image = Image("disk.qcow2");
        Stamp(image, A);
        ReceiptFor(image, A);
        var info = Assert.Single(Find());
        Assert.Equal("disk.qcow2", info.Name);
        Assert.Equal(image, info.Path);
        Assert.Equal("qcow2", info.Format);
        Assert.Equal(A, info.Digest);
        Assert.Equal(B, info.ManifestDigest);
        Assert.Equal("oras://ghcr.io/acme/disk:1", info.Reference);
        Assert.Equal(When, info.StagedAt);
        Assert.Equal("0.1.0", info.ModuleVersion);
        Assert.True(info.HasStamp && info.HasReceipt);
        Assert.Equal(StagedImageProblem.None, info.Problem);
        Assert.Null(info.ProblemMessage);
    }

    [Fact]
    public void CijoeStampAloneIsAnImageWithoutProvenance()
    {
        string image = Image("seed.img");
        Stamp(image, A + "\n");
        var info = Assert.Single(Find(formatOf: p => p == image ? "raw" : null));
        Assert.Equal(A, info.Digest);
        Assert.Equal("raw", info.Format);
        Assert.Null(info.Reference);
        Assert.Null(info.ModuleVersion);
        Assert.False(info.HasReceipt);
        Assert.Equal(StagedImageProblem.None, info.Problem);
        Assert.Equal(File.GetLastWriteTimeUtc(image + ".digest"), info.StagedAt!.Value.UtcDateTime);
    }

    [Fact]
    public void AStampBesideAFileThatIsNoDiskImageIsReportedNotThrown()
    {
        string zip = Image("seed.img");
        File.WriteAllBytes(zip, new byte[] { 0x50, 0x4B, 3, 4, 20, 0, 0, 0 });
        Stamp(zip, A);
        string disk = Image("other.img");
        Stamp(disk, B);

        var found = Find();
        Assert.Equal(2, found.Count);
        var bad = Assert.Single(found, i => i.Path == zip);
        Assert.Equal(StagedImageProblem.NotADiskImage, bad.Problem);
        Assert.Contains("zip", bad.ProblemMessage);
        Assert.Equal(string.Empty, bad.Format);
        var good = Assert.Single(found, i => i.Path == disk);
        Assert.Equal("raw", good.Format);
        Assert.Equal(StagedImageProblem.None, good.Problem);
    }

    [Fact]
    public void CurrentWhenTheLayerOrTheManifestIsStillTheStagedOne()
    {
        var staged = new StagedDiskImageInfo { Digest = A, ManifestDigest = B };
        Assert.True(StagedCurrency.IsCurrent(staged, new OrasImage { Digest = A }));
        Assert.True(StagedCurrency.IsCurrent(staged, new OrasImage { Digest = "sha256:" + new string('c', 64), ManifestDigest = B }));
        Assert.False(StagedCurrency.IsCurrent(staged, new OrasImage { Digest = "sha256:" + new string('c', 64), ManifestDigest = "sha256:" + new string('d', 64) }));
        Assert.False(StagedCurrency.IsCurrent(new StagedDiskImageInfo { Digest = A }, new OrasImage { Digest = B, ManifestDigest = B }));
    }

    [Fact]
    public void StampWithoutImageIsReported()
    {
        string image = Image("gone.qcow2", create: false);
        Stamp(image, A);
        var info = Assert.Single(Find());
        Assert.Equal(StagedImageProblem.MissingImage, info.Problem);
        Assert.Contains("gone.qcow2", info.ProblemMessage);
        Assert.Equal(string.Empty, info.Format);
    }

    [Fact]
    public void ReceiptAndStampThatDisagreeAreReported()
    {
        string image = Image("disk.qcow2");
        Stamp(image, A);
        ReceiptFor(image, B);
        var info = Assert.Single(Find());
        Assert.Equal(StagedImageProblem.DigestDisagrees, info.Problem);
        Assert.Equal(A, info.Digest);
        Assert.Contains(A, info.ProblemMessage);
        Assert.Contains(B, info.ProblemMessage);
    }

    [Theory]
    [InlineData("0.3.0", StagedImageProblem.NewerModuleVersion)]
    [InlineData("1.0", StagedImageProblem.NewerModuleVersion)]
    [InlineData("0.2.0", StagedImageProblem.None)]
    [InlineData("0.2", StagedImageProblem.None)]
    [InlineData("0.1.9", StagedImageProblem.None)]
    [InlineData("not-a-version", StagedImageProblem.None)]
    public void ReceiptFromANewerModuleIsReported(string version, StagedImageProblem expected)
    {
        string image = Image("disk.qcow2");
        Stamp(image, A);
        ReceiptFor(image, A, version);
        var info = Assert.Single(Find());
        Assert.Equal(expected, info.Problem);
        Assert.Equal(version, info.ModuleVersion);
    }

    [Theory]
    [InlineData("{ not json")]
    [InlineData("null")]
    [InlineData("[1,2]")]
    [InlineData("{\"digest\": \"md5:abc\"}")]
    [InlineData("{\"digest\": \"" + A + "\", \"time\": \"yesterday\"}")]
    public void UnreadableReceiptIsReportedAndTheStampStillCounts(string json)
    {
        string image = Image("disk.qcow2");
        Stamp(image, A);
        File.WriteAllText(image + ".oras.json", json);
        var info = Assert.Single(Find());
        Assert.Equal(StagedImageProblem.UnreadableReceipt, info.Problem);
        Assert.Equal(A, info.Digest);
        Assert.True(info.HasReceipt);
        Assert.Null(info.Reference);
    }

    [Theory]
    [InlineData("")]
    [InlineData("sha256:short")]
    public void InvalidStampIsReported(string text)
    {
        string image = Image("disk.qcow2");
        Stamp(image, text);
        Assert.Equal(StagedImageProblem.InvalidStamp, Assert.Single(Find()).Problem);
    }

    [Fact]
    public void ReceiptWithoutStampIsReported()
    {
        string image = Image("disk.qcow2");
        ReceiptFor(image, A);
        var info = Assert.Single(Find());
        Assert.Equal(StagedImageProblem.MissingStamp, info.Problem);
        Assert.Equal(A, info.Digest);
    }

    [Fact]
    public void FolderListsOnlyStagedImagesAndRecursesOnRequest()
    {
        string top = Image("b.qcow2");
        Stamp(top, A);
        Image("unstaged.qcow2");
        string nested = Image(Path.Combine("sub", ".hidden", "a.raw"));
        Stamp(nested, B);

        Assert.Equal(new[] { top }, Find().Select(i => i.Path));
        Assert.Equal(new[] { top, nested }.Order(StringComparer.Ordinal), Find(recurse: true).Select(i => i.Path));
    }

    [Theory]
    [InlineData("")]
    [InlineData(".digest")]
    [InlineData(".oras.json")]
    public void FileIsFoundByTheImageOrEitherSidecar(string suffix)
    {
        string image = Image("disk.qcow2");
        Stamp(image, A);
        ReceiptFor(image, A);
        Image("other.qcow2");
        Stamp(Path.Combine(_root, "other.qcow2"), B);
        Assert.Equal(image, Assert.Single(Find(image + suffix)).Path);
    }

    [Fact]
    public void UnstagedFileGivesNothingAndAMissingPathIsAnError()
    {
        Assert.Empty(Find(Image("plain.qcow2")));
        var ex = Assert.Throws<OrasStagingException>(() => Find(Path.Combine(_root, "nothing-here")));
        Assert.Equal(ErrorCode.PathNotFound, ex.Code);
    }
}
