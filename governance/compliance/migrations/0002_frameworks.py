"""The regulatory frameworks Charter ships, as revision 1 of each item.

Each item is the official reference number and a short paraphrase in Charter's own words (not the
text of the regulation or standard), with the Charter evidence that covers it as requirement codes
(``governance.compliance.evidence``). The catalogue is frozen here, not imported, so that a later
change in code never rewrites what this migration created; site administrators revise items in the
app, and every revision is kept.
"""

from django.db import migrations

C = "card."
E = "evaluation."

# key -> (name, source, description, [(reference, title, summary, evidence)])
FRAMEWORKS = {
    "eu-ai-act": (
        "EU AI Act",
        "Regulation (EU) 2024/1689 (Artificial Intelligence Act): Articles 9-15 and Annex IV",
        "Obligations for high-risk AI systems and the technical documentation a provider keeps for them.",
        [
            ("Art. 9", "Risk management system",
             "Run a documented, repeated process over the whole lifecycle that finds foreseeable risks to health, "
             "safety and rights, and decides and tests measures against them.",
             [C + "ethical_considerations", C + "caveats_and_recommendations", "approval"]),
            ("Art. 10", "Data and data governance",
             "Training, validation and test data are relevant, representative and checked for errors and possible "
             "bias, with their origin and preparation recorded.",
             [C + "training_data", C + "evaluation_data", E + "data_quality", E + "fairness"]),
            ("Art. 11", "Technical documentation",
             "Write the technical documentation before release and keep it current, so that conformity can be "
             "assessed from it.",
             [C + "model_details", C + "intended_use", "audit"]),
            ("Art. 12", "Record-keeping",
             "The system logs events automatically over its lifetime, so that what it did can be traced afterwards.",
             ["audit", "monitoring"]),
            ("Art. 13", "Transparency and information to deployers",
             "Deployers get instructions that state the purpose, the level of accuracy, the known limits and how "
             "to read the outputs.",
             [C + "intended_use", C + "metrics", C + "caveats_and_recommendations", E + "explainability"]),
            ("Art. 14", "Human oversight",
             "People can understand, watch, overrule or stop the system while it is in use.",
             ["approval", C + "caveats_and_recommendations", E + "explainability"]),
            ("Art. 15", "Accuracy, robustness and cybersecurity",
             "The system reaches a declared level of accuracy and stays robust to errors and inconsistencies "
             "throughout its life.",
             [E + "performance", E + "robustness", C + "metrics", "monitoring"]),
            ("Annex IV §1", "General description",
             "What the system is for, who provides it, which version it is and what it runs on.",
             [C + "model_details", C + "intended_use"]),
            ("Annex IV §2(a)", "Development methods",
             "How the system was built, including pre-trained models or third-party tools it relies on.",
             [C + "model_details", C + "training_data"]),
            ("Annex IV §2(b)", "Design choices",
             "The general logic, the main design decisions and their reasons, and what the model optimises.",
             [C + "model_details", C + "metrics"]),
            ("Annex IV §2(d)", "Data requirements",
             "Where the training data came from, what it covers, how it was selected, labelled and cleaned.",
             [C + "training_data", E + "data_quality"]),
            ("Annex IV §2(e)", "Human oversight measures",
             "An assessment of the oversight measures needed, and of what helps deployers interpret outputs.",
             ["approval", E + "explainability"]),
            ("Annex IV §2(g)", "Validation and testing",
             "The validation and test procedures, their data and metrics (accuracy, robustness, discriminatory "
             "impact), with dated test records signed off by the people responsible.",
             [C + "evaluation_data", C + "quantitative_analyses", E + "performance", E + "robustness", E + "fairness",
              "approval", "audit"]),
            ("Annex IV §3", "Capabilities and limitations",
             "How well the system performs for the people and groups it is used on, foreseeable unintended "
             "outcomes and risks.",
             [C + "factors", C + "quantitative_analyses", C + "caveats_and_recommendations",
              C + "ethical_considerations"]),
            ("Annex IV §4", "Appropriateness of the metrics",
             "Why the chosen performance measures suit this particular system.",
             [C + "metrics"]),
            ("Annex IV §5", "Risk management description",
             "A description of the risk management system of Article 9 as applied to this system.",
             [C + "ethical_considerations", "approval"]),
            ("Annex IV §6", "Changes over the lifecycle",
             "A record of the relevant changes made to the system after release.",
             ["audit"]),
            ("Annex IV §9", "Post-market monitoring",
             "How performance is evaluated once the system is in use, including the monitoring plan.",
             ["monitoring"]),
        ],
    ),
    "nist-ai-rmf": (
        "NIST AI RMF",
        "NIST AI 100-1, Artificial Intelligence Risk Management Framework 1.0 (Govern, Map, Measure, Manage)",
        "A voluntary framework of outcomes for managing AI risk, organised in four functions.",
        [
            ("GOVERN 1.1", "Legal and regulatory requirements",
             "The laws and rules that apply to the system are known, handled and written down.",
             ["approval", "audit"]),
            ("GOVERN 1.4", "Transparent risk management",
             "Risk decisions follow set policies and procedures and their outcomes are recorded.",
             ["approval", "audit"]),
            ("GOVERN 1.6", "Inventory of AI systems",
             "There is an inventory of the AI systems in use, resourced according to risk.",
             [C + "model_details", "audit"]),
            ("GOVERN 2.1", "Roles and responsibilities",
             "Who does what in mapping, measuring and managing risk is documented and clear.",
             ["approval", "audit"]),
            ("MAP 1.1", "Intended purpose and context",
             "The intended uses, the setting, the people affected and the applicable norms are understood and "
             "documented.",
             [C + "intended_use"]),
            ("MAP 2.1", "Tasks and methods",
             "The tasks the system supports and the methods that implement them are defined.",
             [C + "model_details"]),
            ("MAP 2.2", "Knowledge limits and human use",
             "The limits of what the system knows, and how people will use and oversee its outputs, are written "
             "down.",
             [C + "caveats_and_recommendations", C + "intended_use"]),
            ("MAP 2.3", "Scientific integrity and TEVV",
             "Test, evaluation, verification and validation considerations, such as data selection and how "
             "constructs are measured, are identified and documented.",
             [C + "training_data", C + "evaluation_data", E + "data_quality"]),
            ("MAP 5.1", "Likelihood and size of impacts",
             "Possible impacts, good and bad, and how likely and large they are, are identified and documented.",
             [C + "ethical_considerations"]),
            ("MEASURE 1.1", "Choice of metrics",
             "The methods and metrics for the main risks are chosen and documented, including what is left "
             "unmeasured.",
             [C + "metrics"]),
            ("MEASURE 2.3", "Performance demonstrated",
             "Performance is measured and shown under conditions like those of deployment, and documented.",
             [E + "performance", C + "quantitative_analyses"]),
            ("MEASURE 2.4", "Monitoring in production",
             "The behaviour of the system is watched while it is in production.",
             ["monitoring"]),
            ("MEASURE 2.5", "Validity and reliability",
             "The system is shown to be valid and reliable, and the limits of how far results generalise are "
             "recorded.",
             [E + "performance", E + "robustness"]),
            ("MEASURE 2.6", "Safety and failing safely",
             "The system is evaluated for safety risks regularly and can fail safely outside its known conditions.",
             [E + "robustness"]),
            ("MEASURE 2.9", "Explainability",
             "The model is explained, validated and documented, and its outputs are interpreted in context.",
             [E + "explainability"]),
            ("MEASURE 2.11", "Fairness and bias",
             "Fairness and bias are evaluated and the results written down.",
             [E + "fairness"]),
            ("MANAGE 1.1", "Go or no-go decision",
             "Someone decides, on the evidence, whether the system meets its purpose and may be deployed.",
             ["approval"]),
            ("MANAGE 2.4", "Deactivation",
             "There are ways to supersede, disengage or deactivate a system that behaves unexpectedly, and their "
             "use is recorded.",
             ["audit"]),
            ("MANAGE 4.1", "Post-deployment monitoring plan",
             "Monitoring after deployment is planned and carried out, including how to respond and recover.",
             ["monitoring"]),
        ],
    ),
    "iso-42001": (
        "ISO/IEC 42001",
        "ISO/IEC 42001:2023, AI management system: Annex A reference controls",
        "Controls an organisation applies to meet its AI objectives; the Annex A numbering is used here.",
        [
            ("A.3.2", "AI roles and responsibilities",
             "Roles and responsibilities for AI are defined and assigned.",
             ["approval"]),
            ("A.4.3", "Data resources",
             "The data used by the system is documented as a resource.",
             [C + "training_data", C + "evaluation_data"]),
            ("A.5.2", "Impact assessment process",
             "There is a process to assess the consequences the system may have for people and society.",
             [C + "ethical_considerations", "approval"]),
            ("A.5.4", "Impact on individuals and groups",
             "The possible impact on individuals and groups of people is assessed and recorded.",
             [C + "ethical_considerations", C + "factors", E + "fairness"]),
            ("A.6.2.2", "Requirements and specification",
             "The requirements of a new system or a change are specified and documented.",
             [C + "intended_use", C + "metrics"]),
            ("A.6.2.3", "Design and development documentation",
             "Design and development are documented against the objectives and requirements.",
             [C + "model_details"]),
            ("A.6.2.4", "Verification and validation",
             "Verification and validation measures and their acceptance criteria are defined and applied.",
             [E + "performance", E + "robustness", C + "quantitative_analyses"]),
            ("A.6.2.5", "Deployment",
             "A deployment plan exists and the requirements are met before the system is deployed.",
             ["approval"]),
            ("A.6.2.6", "Operation and monitoring",
             "What is needed to operate and monitor the system is defined and in place.",
             ["monitoring"]),
            ("A.6.2.7", "Technical documentation",
             "The technical documentation the different users need is available.",
             [C + "model_details", C + "intended_use", C + "caveats_and_recommendations"]),
            ("A.6.2.8", "Event logs",
             "The phases of the lifecycle in which event logs are kept are decided, and the logs are kept.",
             ["audit", "monitoring"]),
            ("A.7.4", "Data quality",
             "Data quality requirements are defined and the data is checked against them.",
             [E + "data_quality"]),
            ("A.7.5", "Data provenance",
             "Where data came from is recorded over its life.",
             [C + "training_data"]),
            ("A.8.2", "Information for users",
             "Users are given the documentation and information they need about the system.",
             [C + "intended_use", C + "caveats_and_recommendations"]),
            ("A.9.4", "Intended use",
             "The system is used as intended and according to its documentation.",
             [C + "intended_use", "monitoring"]),
        ],
    ),
    "sr-11-7": (
        "SR 11-7",
        "Federal Reserve SR 11-7 / OCC 2011-12, Supervisory Guidance on Model Risk Management",
        "US banking supervisors' guidance on developing, validating and governing models; sections by number.",
        [
            ("SR 11-7 IV", "Sound development and use",
             "Development is documented: purpose, design, theory, suitability of the data and known limits.",
             [C + "model_details", C + "intended_use", C + "training_data", C + "caveats_and_recommendations",
              E + "data_quality"]),
            ("SR 11-7 IV (testing)", "Developer testing",
             "The developer tests accuracy, robustness and stability over a range of inputs, including extreme "
             "ones.",
             [E + "performance", E + "robustness"]),
            ("SR 11-7 V.1", "Conceptual soundness",
             "An independent validation judges the design and construction of the model and the evidence for it.",
             ["approval", E + "explainability", C + "model_details"]),
            ("SR 11-7 V.2", "Ongoing monitoring",
             "After use begins, the model is monitored to confirm it still performs as intended.",
             ["monitoring"]),
            ("SR 11-7 V.3", "Outcomes analysis",
             "Model outputs are compared with actual outcomes, for example by back-testing.",
             [E + "performance", "monitoring"]),
            ("SR 11-7 VI (policies)", "Policies and approval before use",
             "Policies and procedures govern model risk, including approval of a model before it is used.",
             ["approval"]),
            ("SR 11-7 VI (roles)", "Roles and independence",
             "Roles are assigned and validation is independent of development.",
             ["approval", "audit"]),
            ("SR 11-7 VI (inventory)", "Model inventory",
             "A complete inventory of models in use, in development and retired is kept.",
             [C + "model_details", "audit"]),
            ("SR 11-7 VI (documentation)", "Documentation",
             "Documentation is detailed enough that someone new to the model can understand how it works and its "
             "limits.",
             [C + "model_details", C + "intended_use", C + "metrics", C + "caveats_and_recommendations"]),
            ("SR 11-7 VI (internal audit)", "Internal audit",
             "Internal audit checks that the model risk framework works and that records are complete.",
             ["audit"]),
        ],
    ),
}  # fmt: skip


def create(apps, schema_editor):
    Framework = apps.get_model("compliance", "Framework")
    MappingItem = apps.get_model("compliance", "MappingItem")
    MappingRevision = apps.get_model("compliance", "MappingRevision")
    for position, (key, (name, source, description, items)) in enumerate(FRAMEWORKS.items()):
        framework, created = Framework.objects.get_or_create(
            key=key, defaults={"name": name, "source": source, "description": description, "position": position}
        )
        if not created:
            continue
        for index, (reference, title, summary, evidence) in enumerate(items):
            item = MappingItem.objects.create(
                framework=framework, reference=reference, position=index, revision=1, title=title, summary=summary,
                evidence=evidence, active=True,
            )  # fmt: skip
            MappingRevision.objects.create(
                item=item, number=1, title=title, summary=summary, evidence=evidence, active=True,
                comment="Shipped with Charter.",
            )  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [("compliance", "0001_initial")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
