using System.Diagnostics;
using OrasStaging.DiskImages;
using DigestRules = OrasStaging.Oci.Digest;

namespace OrasStaging.Staging;

/// <summary>
/// Whether an image is already staged: the stamp, and the receipt that ties a manifest to it, decide. A stamp
/// never vouches for bytes it did not see, so every check compares digests, never file times or sizes.
/// </summary>
internal static class SkipDecision
{
    /// <summary>
    /// The decision that needs no network: a pinned blob digest equal to the stamp, or a pinned manifest digest
    /// that the receipt ties to the stamped layer digest. Null when the registry must be asked.
    /// </summary>
    public static string? CheckOffline(InstallRequest request)
    {
        if (request.Force || request.PinnedDigest is not { } pinned || !File.Exists(request.Path))
        {
            return null;
        }

        string? stamp = StampFile.Read(request.Path);
        if (stamp is null)
        {
            return null;
        }

        if (DigestRules.AreEqual(stamp, pinned))
        {
            return $"The stamp matches the pinned blob digest {Units.ShortDigest(pinned)}.";
        }

        if (Receipt.Read(request.Path) is { } receipt
            && DigestRules.AreEqual(receipt.ManifestDigest, pinned)
            && DigestRules.AreEqual(receipt.Digest, stamp))
        {
            return $"The receipt ties the pinned manifest {Units.ShortDigest(pinned)} to the stamped layer {Units.ShortDigest(stamp)}.";
        }

        return null;
    }

    /// <summary>After resolving: skip when the stamp already holds the layer digest and the image is there.</summary>
    public static string? CheckResolved(InstallRequest request, ResolvedLayer layer)
    {
        if (request.Force || !File.Exists(request.Path))
        {
            return null;
        }

        return DigestRules.AreEqual(StampFile.Read(request.Path), layer.Digest)
            ? $"The stamp matches the layer digest {Units.ShortDigest(layer.Digest)}."
            : null;
    }

    /// <summary>
    /// The result of a skip. The receipt describes the image only while it names the stamped digest; otherwise
    /// the format is the one that would have been written and the virtual size is unknown.
    /// </summary>
    public static StagedImage Skipped(InstallRequest request, string reason, Stopwatch clock, ResolvedLayer? layer,
        DiskImageFormat wouldWrite)
    {
        var receipt = Receipt.Read(request.Path);
        string? stamp = StampFile.Read(request.Path);
        var valid = receipt is not null && DigestRules.AreEqual(receipt.Digest, stamp) ? receipt : null;
        return new StagedImage
        {
            Name = request.Name,
            Reference = request.Reference,
            Path = request.Path,
            Format = (valid?.Format ?? wouldWrite).Name(),
            Digest = layer?.Digest ?? stamp,
            ManifestDigest = layer?.ManifestDigest ?? valid?.ManifestDigest,
            Skipped = true,
            SkipReason = reason,
            VirtualSize = valid?.VirtualSize,
            FileSize = new FileInfo(request.Path).Length,
            Duration = clock.Elapsed,
        };
    }
}
