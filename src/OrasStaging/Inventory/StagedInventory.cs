using OrasStaging.DiskImages;
using OrasStaging.Staging;
using OciDigest = OrasStaging.Oci.Digest;

namespace OrasStaging.Inventory;

/// <summary>
/// Finds what is staged in a file or folder from the files beside the images: our receipts (<c>&lt;image&gt;.oras.json</c>)
/// and stamps (<c>&lt;image&gt;.digest</c>, which the cijoe seed script writes alone). Only reads files; the images
/// themselves are not hashed (the stamp is the record, as for skips).
/// </summary>
internal static class StagedInventory
{
    /// <param name="path">An image, its stamp or receipt, or a folder.</param>
    /// <param name="recurse">For a folder: also its subfolders.</param>
    /// <param name="currentModuleVersion">This module's version (<see cref="Receipt.CurrentModuleVersion"/>), to spot newer receipts.</param>
    /// <param name="formatOf">Format of an image without a receipt; null: <see cref="StagedFormat.Sniff"/>, which also reports a file that is no disk image.</param>
    public static IReadOnlyList<StagedDiskImageInfo> Find(string path, bool recurse, string? currentModuleVersion = null, Func<string, string?>? formatOf = null)
    {
        currentModuleVersion ??= Receipt.CurrentModuleVersion;
        string full = System.IO.Path.GetFullPath(path);
        IEnumerable<string> images;
        if (Directory.Exists(full))
        {
            images = ImagesIn(full, recurse);
        }
        else if (File.Exists(full) || File.Exists(StampFile.PathFor(ImageOf(full))) || File.Exists(Receipt.PathFor(ImageOf(full))))
        {
            images = new[] { ImageOf(full) };
        }
        else
        {
            throw new OrasStagingException(ErrorCode.PathNotFound, $"Cannot find '{path}'.",
                "Give an image file, its .digest stamp, or a folder of staged images.");
        }

        return images
            .Where(image => File.Exists(StampFile.PathFor(image)) || File.Exists(Receipt.PathFor(image)))
            .Select(image => Describe(image, currentModuleVersion, formatOf))
            .ToList();
    }

    /// <summary>The image a stamp or receipt path belongs to; any other path is the image itself.</summary>
    public static string ImageOf(string path) =>
        path.EndsWith(".oras.json", StringComparison.Ordinal) ? path[..^".oras.json".Length]
        : path.EndsWith(".digest", StringComparison.Ordinal) ? path[..^".digest".Length]
        : path;

    private static IEnumerable<string> ImagesIn(string folder, bool recurse)
    {
        var options = new EnumerationOptions
        {
            RecurseSubdirectories = recurse,
            IgnoreInaccessible = true,

            // Lab folders are often dot-folders (~/.cache/...); .NET counts those as hidden on Unix.
            AttributesToSkip = FileAttributes.System,
        };
        return Directory.EnumerateFiles(folder, "*", options)
            .Where(f => f.EndsWith(".digest", StringComparison.Ordinal) || f.EndsWith(".oras.json", StringComparison.Ordinal))
            .Select(ImageOf)
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal);
    }

    private static StagedDiskImageInfo Describe(string image, string currentModuleVersion, Func<string, string?>? formatOf)
    {
        bool imageExists = File.Exists(image);
        string stampPath = StampFile.PathFor(image);
        string receiptPath = Receipt.PathFor(image);
        bool hasStamp = File.Exists(stampPath);
        bool hasReceipt = File.Exists(receiptPath);
        string? stamp = hasStamp ? StampFile.Read(image) : null;
        Receipt? receipt = hasReceipt ? ReadReceipt(image) : null;

        var problem = StagedImageProblem.None;
        string? message = null;
        void Report(StagedImageProblem p, string m)
        {
            // The first problem found is the most serious: the checks below run from "nothing to use" to "a detail".
            if (problem == StagedImageProblem.None)
            {
                problem = p;
                message = m;
            }
        }

        if (!imageExists)
        {
            Report(StagedImageProblem.MissingImage, $"The {(hasStamp ? "stamp" : "receipt")} is there but the image '{image}' is not.");
        }

        if (hasReceipt && receipt is null)
        {
            Report(StagedImageProblem.UnreadableReceipt, $"The receipt '{receiptPath}' cannot be read as a receipt (not JSON, or no valid digest).");
        }

        if (hasStamp && !OciDigest.IsValid(stamp))
        {
            Report(StagedImageProblem.InvalidStamp, $"The stamp '{stampPath}' does not hold a sha256 or sha512 digest.");
        }

        if (receipt is not null && OciDigest.IsValid(stamp) && !OciDigest.AreEqual(stamp, receipt.Digest))
        {
            Report(StagedImageProblem.DigestDisagrees,
                $"The stamp says {stamp} but the receipt says {receipt.Digest}; the image was changed by another tool or one of the files is stale.");
        }

        if (receipt is not null && !hasStamp)
        {
            Report(StagedImageProblem.MissingStamp, "There is a receipt but no stamp, so the image does not count as staged and the next install pulls it again.");
        }

        if (receipt is not null && IsNewer(receipt.ModuleVersion, currentModuleVersion))
        {
            Report(StagedImageProblem.NewerModuleVersion,
                $"The receipt was written by OrasStaging {receipt.ModuleVersion}, newer than this {currentModuleVersion}; fields it added are not shown.");
        }

        string format = receipt is not null ? receipt.Format.Name() : string.Empty;
        if (receipt is null && imageExists)
        {
            if (formatOf is not null)
            {
                format = formatOf(image) ?? string.Empty;
            }
            else
            {
                var sniffed = StagedFormat.Sniff(image);
                format = sniffed.Format ?? string.Empty;
                if (sniffed.NotADisk is { } what)
                {
                    Report(StagedImageProblem.NotADiskImage, $"The image '{image}' is {what}, not a disk image.");
                }
            }
        }

        return new StagedDiskImageInfo
        {
            Name = System.IO.Path.GetFileName(image),
            Path = image,
            Format = format,
            Digest = OciDigest.IsValid(stamp) ? stamp : receipt?.Digest,
            ManifestDigest = receipt?.ManifestDigest,
            Reference = receipt?.Reference is { Length: > 0 } r ? r : null,
            StagedAt = receipt is not null ? receipt.Time : hasStamp ? StampTime(stampPath) : null,
            ModuleVersion = receipt?.ModuleVersion is { Length: > 0 } v ? v : null,
            HasStamp = hasStamp,
            HasReceipt = hasReceipt,
            Problem = problem,
            ProblemMessage = message,
        };
    }

    /// <summary>Receipt.Read, where a receipt that parses but names no valid digest counts as unreadable too.</summary>
    private static Receipt? ReadReceipt(string image)
    {
        Receipt? receipt;
        try
        {
            receipt = Receipt.Read(image);
        }
        catch (Exception ex) when (ex is NotSupportedException or ArgumentException or InvalidOperationException)
        {
            // System.Text.Json reports some shapes (for example a bad date) through these rather than JsonException.
            return null;
        }

        return receipt is not null && OciDigest.IsValid(receipt.Digest) ? receipt : null;
    }

    private static DateTimeOffset? StampTime(string stampPath)
    {
        try
        {
            return new DateTimeOffset(File.GetLastWriteTimeUtc(stampPath), TimeSpan.Zero);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>True when <paramref name="written"/> is a later version than <paramref name="current"/>; unparsable is not newer.</summary>
    internal static bool IsNewer(string? written, string current) =>
        Version.TryParse(written, out var w) && Version.TryParse(current, out var c) && Normalise(w) > Normalise(c);

    // Version treats a missing build number as -1, so "1.2" < "1.2.0"; compare with missing parts as 0.
    private static Version Normalise(Version v) => new(v.Major, v.Minor, Math.Max(v.Build, 0), Math.Max(v.Revision, 0));
}
