using OrasStaging.DiskImages;

namespace OrasStaging.Inventory;

/// <summary>What the header of an image without a receipt says: its format, or what it is when it is no disk image.</summary>
internal sealed record SniffedFormat(string? Format, string? NotADisk);

/// <summary>
/// The format of a staged image that has no receipt (a cijoe stamp alone), from its header. A file that is no disk
/// image (an archive, a web page) is named, so the inventory can report it; the detector's own rule would throw,
/// which is right for staging but would hide every other image of the listing.
/// </summary>
internal static class StagedFormat
{
    public static SniffedFormat Sniff(string image)
    {
        byte[] head = new byte[ImageFormatDetector.PeekLength];
        int read;
        try
        {
            using var stream = File.OpenRead(image);
            read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new SniffedFormat(null, null);
        }

        var bytes = head.AsSpan(0, read);
        if (ImageFormatDetector.NotADisk(bytes) is { } what)
        {
            return new SniffedFormat(null, what);
        }

        return new SniffedFormat(ImageFormatDetector.Detect(bytes).ToString().ToLowerInvariant(), null);
    }
}

/// <summary>The -CheckRemote rule: is what is staged still what the reference names.</summary>
internal static class StagedCurrency
{
    /// <summary>
    /// True when the reference now resolves to the staged layer digest or the staged manifest (either: a receipt
    /// staged with -LayerTitle has the same manifest but maybe another default layer).
    /// </summary>
    public static bool IsCurrent(StagedDiskImageInfo staged, OrasImage now) =>
        (staged.Digest is not null && Oci.Digest.AreEqual(now.Digest, staged.Digest))
        || (staged.ManifestDigest is not null && now.ManifestDigest is not null && Oci.Digest.AreEqual(now.ManifestDigest, staged.ManifestDigest));
}
