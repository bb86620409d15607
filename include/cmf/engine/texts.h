// The built-in texts of the engine: the evaluation conversations (`cmf eval`, the factory gate),
// the calibration conversations for importance matrices (`cmf imatrix`, `--imatrix auto`), the
// degeneration smoke prompts and the image question. All of it was written for this project:
// the patients, clinicians, clinics and places are fictional, nothing is copied from any source,
// and the text carries no third-party license. The mix mirrors what cmf models are used for:
// extracting structured information from clinical documents, plus general instructions.
#pragma once

#include <string_view>
#include <vector>

namespace cmf::engine::texts {

struct Turn {
    std::string_view role;  // "system", "user" or "assistant"
    std::string_view content;
};
using Conversation = std::vector<Turn>;

// The evaluation text of `cmf eval` and the factory gate: conversations rendered through the
// model's chat template and scored against the lossless model (KL divergence). About 60% medical
// document extraction, 40% general instructions.
inline const std::vector<Conversation>& evaluation() {
    static const std::vector<Conversation> v = {
        // 1. Discharge summary -> JSON
        {
            {"system", R"cmf(You are a careful clinical documentation assistant. Use only the document; write null for anything not stated.)cmf"},
            {"user", R"cmf(Return one JSON object with the fields patient_name, age, admission_date, discharge_date, primary_diagnosis, antibiotics (array of objects with drug, dose, route, frequency), discharge_medications (array of strings), allergies and follow_up.

DISCHARGE SUMMARY - Riverside District Hospital, Medical Ward B
Patient: Tomas Okafor-Lind, 67-year-old man
Admitted: 3 March 2024. Discharged: 7 March 2024.
Findings: crackles at the right base, right lower lobe consolidation on chest X-ray, SpO2 91% on room air.
Diagnosis: community-acquired pneumonia, right lower lobe. Background of COPD and hypertension.
Treatment: ceftriaxone 1 g IV once daily and azithromycin 500 mg orally once daily, both for 3 days. Stepped down on day 4 to amoxicillin-clavulanate 875/125 mg orally twice daily to complete 7 days of antibiotics in total.
Discharge medications: amoxicillin-clavulanate 875/125 mg twice daily until 9 March; tiotropium 18 mcg inhaled once daily; amlodipine 5 mg once daily.
Allergies: no known drug allergies.
Follow-up: review with general practitioner in 7 days; repeat chest X-ray in 6 weeks.)cmf"},
            {"assistant", R"cmf({
  "patient_name": "Tomas Okafor-Lind",
  "age": 67,
  "admission_date": "2024-03-03",
  "discharge_date": "2024-03-07",
  "primary_diagnosis": "Community-acquired pneumonia, right lower lobe",
  "antibiotics": [
    {"drug": "ceftriaxone", "dose": "1 g", "route": "IV", "frequency": "once daily for 3 days"},
    {"drug": "azithromycin", "dose": "500 mg", "route": "oral", "frequency": "once daily for 3 days"},
    {"drug": "amoxicillin-clavulanate", "dose": "875/125 mg", "route": "oral", "frequency": "twice daily until 9 March (7 days in total)"}
  ],
  "discharge_medications": [
    "amoxicillin-clavulanate 875/125 mg twice daily until 9 March",
    "tiotropium 18 mcg inhaled once daily",
    "amlodipine 5 mg once daily"
  ],
  "allergies": "No known drug allergies",
  "follow_up": "General practitioner review in 7 days; repeat chest X-ray in 6 weeks"
})cmf"},
        },
        // 2. Triage note, rural health post -> JSON
        {
            {"user", R"cmf(This is a triage note from a rural health post. Extract the child's age, weight, duration of illness, signs of dehydration, general danger signs that were checked and found absent, the classification, the treatment given and whether a referral was made. Answer as JSON.

Kaleni Health Post, triage, 14 June, 10:20.
Amara, girl, 18 months, weight 9.6 kg, brought by her mother. Watery diarrhoea for 3 days, about 6 stools per day, no blood. Vomited twice this morning. Still breastfeeding and drinks eagerly when offered water. Not lethargic; alert but irritable. Eyes sunken. Skin pinch goes back slowly (about 1 second). No convulsions. Temperature 37.6 degrees C. MUAC 13.1 cm.
Assessment: diarrhoea with some dehydration (Plan B).
Plan: ORS 75 mL/kg over 4 hours = about 720 mL, given by cup and spoon in the clinic under observation. Zinc 20 mg once daily for 10 days. Continue breastfeeding. Reassess at 14:20. Mother taught when to return immediately. No referral needed at this time.)cmf"},
            {"assistant", R"cmf({
  "age": "18 months",
  "weight_kg": 9.6,
  "duration_of_illness": "3 days",
  "signs_of_dehydration": ["irritable", "sunken eyes", "drinks eagerly", "skin pinch goes back slowly (about 1 second)"],
  "danger_signs_absent": ["lethargy", "unable to drink or breastfeed", "convulsions"],
  "classification": "Diarrhoea with some dehydration (Plan B)",
  "treatment": ["ORS about 720 mL (75 mL/kg) over 4 hours by cup and spoon", "Zinc 20 mg daily for 10 days", "Continue breastfeeding", "Reassess at 14:20"],
  "referral": false
})cmf"},
        },
        // 3. Lab report -> abnormal values
        {
            {"user", R"cmf(List only the results outside the reference range, one per line as: test - value unit - HIGH or LOW - reference range. Then add one sentence saying which result the requesting clinician may want to look at first. Do not interpret beyond that.

LABORATORY REPORT - Hill Road Community Laboratory
Patient: Ines Marwala, female, 54. Venous blood, fasting, collected 22 August 2024 08:05.
Haemoglobin 10.8 g/dL (12.0-15.5)
MCV 74 fL (80-100)
White cell count 6.9 x10^9/L (4.0-11.0)
Platelets 412 x10^9/L (150-400)
Sodium 139 mmol/L (135-145)
Potassium 5.6 mmol/L (3.5-5.1)
Creatinine 118 umol/L (45-90)
eGFR 46 mL/min/1.73m2 (>60)
Fasting glucose 7.4 mmol/L (3.9-5.5)
HbA1c 7.1 % (<5.7)
Ferritin 9 ug/L (15-150)
Comment: sample not haemolysed.)cmf"},
            {"assistant", R"cmf(Haemoglobin - 10.8 g/dL - LOW - 12.0-15.5
MCV - 74 fL - LOW - 80-100
Platelets - 412 x10^9/L - HIGH - 150-400
Potassium - 5.6 mmol/L - HIGH - 3.5-5.1
Creatinine - 118 umol/L - HIGH - 45-90
eGFR - 46 mL/min/1.73m2 - LOW - >60
Fasting glucose - 7.4 mmol/L - HIGH - 3.9-5.5
HbA1c - 7.1 % - HIGH - <5.7
Ferritin - 9 ug/L - LOW - 15-150

The raised potassium (5.6 mmol/L, sample not haemolysed) is probably the result to review first.)cmf"},
        },
        // 4. Radiology report -> short summary
        {
            {"user", R"cmf(Summarize this report for the referring nurse in at most three bullet points, then quote the impression exactly.

RADIOLOGY REPORT
Examination: X-ray left wrist, PA and lateral views. Date: 9 November 2024.
Patient: Leontine Abara, 71 years.
Clinical details: fall on outstretched hand yesterday; swelling and tenderness over the distal radius.
Findings: Transverse fracture of the distal radius about 2 cm proximal to the articular surface, with 10 degrees of dorsal angulation and mild dorsal displacement. No intra-articular extension. The ulnar styloid is intact. Carpal bones are normally aligned. Generalised reduction in bone density. Dorsal soft tissue swelling.
Impression: Extra-articular distal radius fracture with mild dorsal angulation and displacement. Osteopenia. Suggest orthopaedic assessment; repeat radiographs after any reduction, or at 1 week if managed in a cast.)cmf"},
            {"assistant", R"cmf(- Broken left wrist: the end of the radius is fractured 2 cm from the joint, tilted 10 degrees backwards and slightly shifted, not into the joint.
- The bones look thinner than normal (osteopenia).
- Next: orthopaedic assessment; repeat X-rays after any reduction, or at 1 week if in a cast.

Impression (verbatim): "Extra-articular distal radius fracture with mild dorsal angulation and displacement. Osteopenia. Suggest orthopaedic assessment; repeat radiographs after any reduction, or at 1 week if managed in a cast.")cmf"},
        },
        // 5. Referral letter -> JSON, with a follow-up question
        {
            {"user", R"cmf(Return JSON with: patient, date_of_birth, referring_clinician, referred_to, reason, urgency, key_findings (list), relevant_history (list), investigations_done and requests.

Lakeview Road Health Centre, 12 February 2025
To: Surgical Outpatient Clinic, St. Aldric District Hospital
Re: Halima Voss, date of birth 4 July 1979

Dear colleague,
Thank you for seeing Mrs. Voss, 45, who noticed a painless lump in her left breast six weeks ago. On examination there is a firm, irregular 2.5 cm mass in the upper outer quadrant of the left breast, not fixed to the skin, and one mobile palpable node in the left axilla. There is no nipple discharge or skin change.
Her mother was treated for breast cancer at the age of 52. She takes no regular medicines and has no allergies.
We have no ultrasound or mammography here, so no imaging or biopsy has been done. A full blood count last week was normal.
I would be grateful for urgent assessment, imaging and tissue diagnosis.

Yours sincerely,
Dr. Petra Nakamura-Olsen, Medical Officer)cmf"},
            {"assistant", R"cmf({
  "patient": "Halima Voss",
  "date_of_birth": "1979-07-04",
  "referring_clinician": "Dr. Petra Nakamura-Olsen, Lakeview Road Health Centre",
  "referred_to": "Surgical Outpatient Clinic, St. Aldric District Hospital",
  "reason": "Painless left breast lump noticed six weeks ago",
  "urgency": "urgent",
  "key_findings": [
    "Firm, irregular 2.5 cm mass, upper outer quadrant of left breast, not fixed to skin",
    "One mobile palpable left axillary node",
    "No nipple discharge or skin change"
  ],
  "relevant_history": [
    "Mother treated for breast cancer at age 52",
    "No regular medicines, no allergies"
  ],
  "investigations_done": "Full blood count last week, normal",
  "requests": "Urgent assessment, imaging and tissue diagnosis"
})cmf"},
            {"user", R"cmf(Which investigations does the letter say have not been done, and why?)cmf"},
            {"assistant", R"cmf(The letter says no imaging (ultrasound or mammography) and no biopsy have been done, because the health centre has no ultrasound or mammography. The only investigation reported is last week's full blood count, which was normal.)cmf"},
        },
        // 6. Snakebite, community health worker report
        {
            {"user", R"cmf(Below is a community health worker's report. Give (1) a timeline as a markdown table with columns Time and Event, and (2) whether any action in the note goes against standard snakebite first aid.

Community health worker report, Tesi village, 17 October.
15:40 Jonah Terrell-Adu, male, about 30, farmer, bitten on the right ankle by a brown snake, about 1 metre long, while clearing grass.
15:55 Seen by me in the field. Two puncture marks above the right ankle, swelling to mid-calf. Anxious but talking normally, no bleeding from the gums, no drooping eyelids. Pulse 104.
16:00 Kept him lying still, removed his ankle bracelet and boot before the swelling increased, splinted the leg with a board and cloth. No tourniquet, wound not cut. Reassured him.
16:10 Called the district ambulance: 90 minutes away. Arranged the cooperative pickup truck instead; patient carried lying down.
16:25 Swelling now up to the knee. Marked the edge of the swelling on the skin with the time.
17:30 Arrived at Kessen District Hospital; handed over to the emergency nurse. Antivenom available there.)cmf"},
            {"assistant", R"cmf((1) Timeline

| Time | Event |
|------|-------|
| 15:40 | Bitten on the right ankle by a brown snake, about 1 m, while clearing grass |
| 15:55 | Assessed: two puncture marks, swelling to mid-calf, pulse 104, no gum bleeding or drooping eyelids |
| 16:00 | Kept still, bracelet and boot removed, leg splinted; no tourniquet, wound not cut |
| 16:10 | Ambulance 90 minutes away; taken by pickup truck, lying down |
| 16:25 | Swelling up to the knee; edge of swelling marked with the time |
| 17:30 | Handed over at Kessen District Hospital |

(2) None of the recorded actions go against standard snakebite first aid. He was kept still, the leg was splinted, tight items were removed early, and no tourniquet or cutting was used.)cmf"},
        },
        // 7. Antenatal clinic note -> list
        {
            {"user", R"cmf(From this antenatal note, extract the gestational age, the blood pressure readings, the urine protein result, the symptoms and the plan, as a short list. Then explain in one sentence why the plan is urgent, using only what the note says.

Antenatal clinic note, Brookfield Maternity Unit, 3 April 2025.
Sofia Lindqvist-Mensah, 29 years, G2P1, 34 weeks + 2 days by dating scan.
Complaints: headache for two days, not relieved by paracetamol; swelling of the hands and face since yesterday. No visual disturbance. Fetal movements normal.
BP 148/96 mmHg; repeated after 15 minutes 150/98 mmHg. BP at booking was 112/70. Urine dipstick: protein 2+. Pulse 88. Fundal height 34 cm. Fetal heart rate 140/min.
Plan: urgent referral to the obstetric unit today for assessment for pre-eclampsia. Transport arranged by the clinic; husband informed.)cmf"},
            {"assistant", R"cmf(- Gestational age: 34 weeks + 2 days (by dating scan)
- Blood pressure: 148/96 mmHg, then 150/98 mmHg after 15 minutes (112/70 at booking)
- Urine protein: 2+ on dipstick
- Symptoms: headache for two days not relieved by paracetamol; swelling of hands and face; no visual disturbance
- Plan: urgent referral to the obstetric unit today for assessment for pre-eclampsia, with transport arranged by the clinic

It is urgent because at 34 weeks she has new high blood pressure on two readings, 2+ proteinuria, headache and swelling, and the note asks for same-day assessment for pre-eclampsia.)cmf"},
        },
        // 8. Dog bite, rabies post-exposure -> JSON
        {
            {"user", R"cmf(Return JSON with: patient, age, time_of_bite, animal_status, exposure_category, wound_care (list), vaccine_schedule (list of objects with day and date), immunoglobulin, tetanus, antibiotic and referral.

Clinic note, Old Market Dispensary, 21 January 2025, 09:15.
Daniel Oyelaran-Brandt, 11 years, weight 34 kg. Bitten on the left forearm by a neighbour's dog yesterday evening at about 19:00. The dog is unvaccinated and has since run away. Wound: two deep punctures and a 3 cm laceration; bled at the time. His mother rinsed it with water only.
Today: wound washed with soap and running water for 15 minutes, povidone-iodine applied, left open. WHO category III exposure.
Rabies vaccine dose 1 given IM today (day 0); further doses due on days 3, 7 and 14. Rabies immunoglobulin not available here: referred to St. Aldric District Hospital today for wound infiltration with immunoglobulin. Tetanus: last dose at age 4; tetanus-diphtheria booster given today. Amoxicillin-clavulanate prescribed for 5 days, dosed by weight.)cmf"},
            {"assistant", R"cmf({
  "patient": "Daniel Oyelaran-Brandt",
  "age": 11,
  "time_of_bite": "2025-01-20, about 19:00",
  "animal_status": "neighbour's dog, unvaccinated, has run away",
  "exposure_category": "WHO category III",
  "wound_care": ["Washed with soap and running water for 15 minutes", "Povidone-iodine applied", "Left open"],
  "vaccine_schedule": [
    {"day": 0, "date": "2025-01-21"},
    {"day": 3, "date": "2025-01-24"},
    {"day": 7, "date": "2025-01-28"},
    {"day": 14, "date": "2025-02-04"}
  ],
  "immunoglobulin": "Not available at the dispensary; referred for wound infiltration",
  "tetanus": "Tetanus-diphtheria booster given today (last dose at age 4)",
  "antibiotic": "Amoxicillin-clavulanate for 5 days, dosed by weight (34 kg)",
  "referral": "St. Aldric District Hospital, today, for rabies immunoglobulin"
})cmf"},
        },
        // 9. Explain a concept
        {
            {"user", R"cmf(Explain what the half-life of a medicine is for a first-year nursing student. One short paragraph and one worked example.)cmf"},
            {"assistant", R"cmf(The half-life of a medicine is the time it takes for the amount of the drug in the body (usually measured in the blood) to fall by half. After about four to five half-lives almost all of a single dose (more than 90 percent) has been eliminated, and with regular dosing it also takes about four to five half-lives for the level to settle at a steady state. Half-life can be longer in people whose liver or kidneys clear the drug more slowly, such as older adults, which is one reason doses are sometimes adjusted.

Worked example: a medicine has a half-life of 6 hours and the blood level is 80 mg/L at noon. At 18:00 it is 40 mg/L, at midnight 20 mg/L, at 06:00 10 mg/L and at noon the next day 5 mg/L. After four half-lives (24 hours), only one sixteenth of the starting level remains.)cmf"},
        },
        // 10. Plain-language rewrite
        {
            {"user", R"cmf(Rewrite this for a family taking a child home from the emergency department. Use plain words that a 12-year-old could follow, and keep every instruction.

"Following discharge, the patient should be observed by a responsible adult for a period of 24 hours. Should the patient exhibit persistent emesis, increasing somnolence, confusion, unequal pupils or convulsive activity, immediate re-presentation to the emergency department is indicated. Analgesia with paracetamol is appropriate. Sedating medications and alcohol should be avoided. Return to contact sport is contraindicated until clearance by a physician.")cmf"},
            {"assistant", R"cmf(For the next 24 hours, an adult should stay with your child and keep an eye on them.

Come straight back to the emergency department if your child:
- keeps being sick (vomiting)
- gets more and more sleepy or hard to wake up
- is confused
- has one pupil (the black centre of the eye) bigger than the other
- has a fit (seizure)

You can give paracetamol for pain. Do not give medicines that make people sleepy, and no alcohol. Your child must not play contact sports until a doctor says it is safe.)cmf"},
        },
        // 11. Dose calculation, step by step
        {
            {"user", R"cmf(A child weighs 14 kg. The dose of paracetamol is 15 mg/kg per dose. We have oral suspension 120 mg/5 mL. How many mL per dose? Show your working.)cmf"},
            {"assistant", R"cmf(Step 1 - dose in mg: 15 mg/kg x 14 kg = 210 mg.

Step 2 - concentration per mL: 120 mg / 5 mL = 24 mg per mL.

Step 3 - volume: 210 mg / 24 mg per mL = 8.75 mL.

So one dose is 8.75 mL of the 120 mg/5 mL suspension. Doses are usually given every 4 to 6 hours, with no more than 4 doses in 24 hours (60 mg/kg per day, which is 840 mg or 35 mL for this child). Please check the calculation with a colleague and against the label of the product you are using, because suspensions come in different strengths.)cmf"},
            {"user", R"cmf(And if the only bottle we have is 250 mg/5 mL?)cmf"},
            {"assistant", R"cmf(The dose in mg stays the same: 210 mg.

Concentration: 250 mg / 5 mL = 50 mg per mL.

Volume: 210 mg / 50 mg per mL = 4.2 mL.

So the dose is 4.2 mL of the 250 mg/5 mL suspension. Because this bottle is more than twice as strong, label it clearly and make sure the caregiver knows the volume for this particular bottle, so the two strengths are not mixed up.)cmf"},
        },
        // 12. Short email
        {
            {"user", R"cmf(Write a short, polite email from Grace Adeyemi-Koch, coordinator at Northfield Health Centre, to the regional medical store. Our delivery of oral rehydration salts and malaria rapid tests was due on 3 June and has not arrived. We have about one week of rapid tests left. Ask for a new delivery date.)cmf"},
            {"assistant", R"cmf(Subject: Delayed delivery of ORS and malaria rapid tests - Northfield Health Centre

Dear Regional Medical Store team,

Our delivery of oral rehydration salts and malaria rapid diagnostic tests, which was due on 3 June, has not yet arrived at Northfield Health Centre. We currently have about one week of rapid tests left, so the delay will soon affect patient care.

Could you please let us know the new delivery date, or whether part of the order can be sent sooner?

Thank you for your help.

Kind regards,
Grace Adeyemi-Koch
Coordinator, Northfield Health Centre)cmf"},
        },
        // 13. Summary and questions about a passage
        {
            {"user", R"cmf(Summarize this passage in two sentences.

Most vaccines used in routine immunization must be kept between +2 and +8 degrees C all the way from the manufacturer to the patient. This chain of storage and transport is called the cold chain. Heat reduces the potency of all vaccines, and the damage adds up with each exposure. Freezing is just as dangerous for some vaccines, particularly those containing an aluminium adjuvant, such as hepatitis B, pentavalent and tetanus toxoid vaccines; once frozen, they must not be used. Under the multi-dose vial policy, opened vials of certain vaccines may be used in later sessions for up to 28 days if they have been kept cold and handled cleanly, while reconstituted vaccines such as measles and BCG must be discarded six hours after opening or at the end of the session, whichever comes first.)cmf"},
            {"assistant", R"cmf(Most vaccines must be kept between +2 and +8 degrees C throughout the cold chain, because heat damage builds up over time and freezing ruins vaccines with an aluminium adjuvant, such as hepatitis B, pentavalent and tetanus toxoid vaccines. Opened vials of some vaccines can be kept for up to 28 days, while reconstituted vaccines such as measles and BCG must be discarded within six hours or at the end of the session.)cmf"},
            {"user", R"cmf(According to the passage, may a nurse use a frozen vial of tetanus toxoid vaccine once it has thawed? And does the passage say how to dispose of expired vaccines?)cmf"},
            {"assistant", R"cmf(No. The passage says vaccines with an aluminium adjuvant, including tetanus toxoid, must not be used once frozen, and thawing does not change that.

The passage does not say how to dispose of expired or discarded vaccines; it only covers storage temperature and how long opened vials may be kept.)cmf"},
        },
        // 14. Declining to diagnose, urging emergency care
        {
            {"user", R"cmf(I'm 58 and for the last 40 minutes I've had a heavy pressure in my chest that goes into my left arm, and I'm sweaty. I don't want to bother anyone. Is it just indigestion?)cmf"},
            {"assistant", R"cmf(I can't tell you what is causing this, but chest pressure spreading to the arm with sweating, lasting this long, can be a sign of a heart attack, and it needs emergency care now. Please don't wait to see whether it passes, and you are not bothering anyone.

1. Call your local emergency number now. If you cannot get through, ask someone nearby to take you to the nearest emergency department. Do not drive yourself.
2. Stop what you are doing and sit or lie in a comfortable position.
3. If you are not allergic to aspirin and have not been told to avoid it, the emergency operator may advise you to chew one adult aspirin. Follow what they tell you.
4. Unlock your door and, if possible, ask someone to stay with you until help arrives.

If you feel faint or very short of breath, tell the operator straight away.)cmf"},
        },
    };
    return v;
}

// The calibration text of `cmf imatrix` / `--imatrix auto`: different documents from
// evaluation(), same mix (medical document extraction and general instructions).
inline const std::vector<Conversation>& calibration() {
    static const std::vector<Conversation> v = {
        // 1. Discharge summary -> JSON
        {
            {"system", R"cmf(You turn hospital documents into structured data. Use only what the document states; write null for anything missing.)cmf"},
            {"user", R"cmf(Extract a JSON object with: name, age, sex, admitted, discharged, diagnosis, comorbidities (list), treatment_in_hospital (list), new_medicines (list), changed_medicines (list), allergies_or_intolerances and follow_up (list).

DISCHARGE LETTER - Harbourside General Hospital, Ward 4
Marguerite Osei-Tanner, 59, female. Admitted 14 September 2024, discharged 18 September 2024.
Reason for admission: spreading redness, warmth and pain of the left lower leg for 3 days, starting from a small cut on the shin. Temperature 38.4 degrees C on admission. No abscess on ultrasound.
Diagnosis: cellulitis of the left lower leg.
Background: type 2 diabetes (HbA1c 8.9% this admission), obesity, osteoarthritis of both knees.
In hospital: flucloxacillin 2 g IV every 6 hours for 3 days, then oral flucloxacillin 1 g four times daily from 17 September. Leg elevated. Edge of redness marked daily; redness receded well. Blood glucose between 11 and 16 mmol/L on metformin alone.
Medicine changes: oral flucloxacillin 1 g four times daily to continue until 20 September (7 days of antibiotics in total); gliclazide 40 mg once daily with breakfast added. Metformin 1 g twice daily continued unchanged.
Intolerance: codeine (vomiting).
Follow-up: district nurse to check the leg and wound in 2 days; diabetes clinic in 4 weeks; she will check her blood glucose twice daily and record it.)cmf"},
            {"assistant", R"cmf({
  "name": "Marguerite Osei-Tanner",
  "age": 59,
  "sex": "female",
  "admitted": "2024-09-14",
  "discharged": "2024-09-18",
  "diagnosis": "Cellulitis of the left lower leg",
  "comorbidities": ["type 2 diabetes (HbA1c 8.9%)", "obesity", "osteoarthritis of both knees"],
  "treatment_in_hospital": [
    "Flucloxacillin 2 g IV every 6 hours for 3 days",
    "Oral flucloxacillin 1 g four times daily from 17 September",
    "Leg elevation",
    "Daily marking of the edge of redness"
  ],
  "new_medicines": [
    "flucloxacillin 1 g orally four times daily until 20 September",
    "gliclazide 40 mg once daily with breakfast"
  ],
  "changed_medicines": [],
  "allergies_or_intolerances": "Codeine (vomiting)",
  "follow_up": [
    "District nurse leg and wound check in 2 days",
    "Diabetes clinic in 4 weeks",
    "Self-monitoring of blood glucose twice daily"
  ]
})cmf"},
        },
        // 2. Burn triage note -> JSON
        {
            {"user", R"cmf(Return one JSON object with the fields patient, age, time_of_injury, mechanism, areas_burned (list), estimated_tbsa_percent, depth, first_aid_before_arrival, treatment_at_clinic (list) and referral (object with needed, reason, destination).

Triage, Ndova Rural Clinic, 6 August, 13:05.
Esther Kamau-Lindgren, 34 years, female. At 12:30 a pot of boiling water tipped over while she was cooking on an open fire. Scald to the front of the right forearm and the back of the right hand. A neighbour poured cool tap water over the burn for about 20 minutes before bringing her.
Examination: red, moist, blistered, very painful skin; capillary refill present. Area estimated at about 3% of body surface (about three of her palms). No burns to the face, no smoke exposure, breathing normal.
Treatment: paracetamol 1 g and ibuprofen 400 mg orally; burns covered loosely with cling film after cleaning; arm elevated; tetanus toxoid given (last dose more than 10 years ago).
Plan: superficial partial-thickness burn including the hand. Referred to the burns unit at Marlow Regional Hospital because hand burns need specialist assessment for function. Leaving by clinic vehicle at 13:45.)cmf"},
            {"assistant", R"cmf({
  "patient": "Esther Kamau-Lindgren",
  "age": 34,
  "time_of_injury": "12:30",
  "mechanism": "Scald from boiling water while cooking on an open fire",
  "areas_burned": ["front of right forearm", "back of right hand"],
  "estimated_tbsa_percent": 3,
  "depth": "Superficial partial thickness",
  "first_aid_before_arrival": "Cool tap water poured over the burn for about 20 minutes by a neighbour",
  "treatment_at_clinic": [
    "Paracetamol 1 g orally",
    "Ibuprofen 400 mg orally",
    "Burn cleaned and covered loosely with cling film",
    "Arm elevated",
    "Tetanus toxoid given"
  ],
  "referral": {
    "needed": true,
    "reason": "Burn involves the hand and needs specialist assessment for function",
    "destination": "Burns unit, Marlow Regional Hospital"
  }
})cmf"},
        },
        // 3. Lab report -> table
        {
            {"user", R"cmf(Put every result from this report into a markdown table with the columns Test, Result, Reference range and Status (normal, high or low). Do not add an interpretation.

Patient: Arvid Solberg-Nwosu, male, 41. Sample date 3 February 2025.
ALT 96 U/L (7-55)
AST 71 U/L (8-40)
GGT 188 U/L (8-61)
Alkaline phosphatase 102 U/L (40-129)
Total bilirubin 18 umol/L (<21)
Albumin 41 g/L (35-50)
TSH 2.1 mIU/L (0.4-4.0)
MCV 103 fL (80-100)
Platelets 138 x10^9/L (150-400))cmf"},
            {"assistant", R"cmf(| Test | Result | Reference range | Status |
|------|--------|-----------------|--------|
| ALT | 96 U/L | 7-55 | high |
| AST | 71 U/L | 8-40 | high |
| GGT | 188 U/L | 8-61 | high |
| Alkaline phosphatase | 102 U/L | 40-129 | normal |
| Total bilirubin | 18 umol/L | <21 | normal |
| Albumin | 41 g/L | 35-50 | normal |
| TSH | 2.1 mIU/L | 0.4-4.0 | normal |
| MCV | 103 fL | 80-100 | high |
| Platelets | 138 x10^9/L | 150-400 | low |)cmf"},
        },
        // 4. Medication list -> JSON, follow-up question
        {
            {"user", R"cmf(Here is a pharmacy printout. Make a JSON array with one object per medicine: name, strength, form, directions and purpose (null if not given).

Sunridge Pharmacy - current repeat medicines for Leila Haddad-Moreno, 36
- Levetiracetam 500 mg tablets: take one tablet twice a day (epilepsy)
- Budesonide/formoterol 200/6 mcg inhaler: two puffs twice a day (asthma)
- Salbutamol 100 mcg inhaler: one to two puffs when needed for wheeze
- Folic acid 5 mg tablets: one tablet daily (planning pregnancy, advised by neurologist)
- Cetirizine 10 mg tablets: one tablet daily when needed for hay fever)cmf"},
            {"assistant", R"cmf([
  {"name": "levetiracetam", "strength": "500 mg", "form": "tablet", "directions": "1 tablet twice a day", "purpose": "epilepsy"},
  {"name": "budesonide/formoterol", "strength": "200/6 mcg", "form": "inhaler", "directions": "2 puffs twice a day", "purpose": "asthma"},
  {"name": "salbutamol", "strength": "100 mcg", "form": "inhaler", "directions": "1 to 2 puffs when needed", "purpose": "wheeze"},
  {"name": "folic acid", "strength": "5 mg", "form": "tablet", "directions": "1 tablet daily", "purpose": "planning pregnancy, advised by neurologist"},
  {"name": "cetirizine", "strength": "10 mg", "form": "tablet", "directions": "1 tablet daily when needed", "purpose": "hay fever"}
])cmf"},
            {"user", R"cmf(Which of these are taken only when needed, and which are inhalers?)cmf"},
            {"assistant", R"cmf(Taken only when needed: salbutamol (for wheeze) and cetirizine (for hay fever).

Inhalers: budesonide/formoterol 200/6 mcg, used regularly twice a day, and salbutamol 100 mcg, used when needed.)cmf"},
        },
        // 5. Ultrasound report -> JSON by organ
        {
            {"user", R"cmf(Turn this ultrasound report into JSON with one key per organ (liver, gallbladder, common_bile_duct, pancreas, spleen, kidneys) plus impression. Keep the wording short.

ULTRASOUND ABDOMEN - Eastgate Imaging Centre, 27 May 2025
Patient: Nadia Brennan-Achebe, 46. Indication: recurrent right upper quadrant pain after fatty meals.
Liver: normal size (15 cm), smooth outline, mildly increased echogenicity. No focal lesion.
Gallbladder: several mobile echogenic stones with acoustic shadowing, the largest 14 mm. Wall 2 mm, not thickened. No pericholecystic fluid. Sonographic Murphy sign negative.
Common bile duct: 4 mm, not dilated.
Pancreas: head and body normal; tail obscured by bowel gas.
Spleen: 10 cm, normal.
Kidneys: right 10.8 cm, left 11.2 cm, normal cortex, no hydronephrosis, no stones.
Impression: Cholelithiasis without sonographic signs of acute cholecystitis. Mild fatty change of the liver. No biliary dilatation.)cmf"},
            {"assistant", R"cmf({
  "liver": "Normal size (15 cm), mildly increased echogenicity, no focal lesion",
  "gallbladder": "Several mobile stones, largest 14 mm; wall 2 mm; no pericholecystic fluid; Murphy sign negative",
  "common_bile_duct": "4 mm, not dilated",
  "pancreas": "Head and body normal; tail obscured by bowel gas",
  "spleen": "10 cm, normal",
  "kidneys": "Right 10.8 cm, left 11.2 cm; normal cortex; no hydronephrosis or stones",
  "impression": "Gallstones without signs of acute cholecystitis; mild fatty liver; no biliary dilatation"
})cmf"},
        },
        // 6. Referral letter -> fields
        {
            {"user", R"cmf(Read this referral and give me, as a bulleted list: who is referred, by whom, to which service, the main concern, supporting observations, what has already been tried, and what the referrer is asking for.

Pinecrest Primary School Health Service
10 March 2025
To: Audiology and ENT Clinic, Marlow Regional Hospital

Dear colleagues,
I am referring Kofi Arendt-Salazar, aged 7, whose teacher and parents have noticed over the past term that he often does not respond when spoken to from behind, turns the television up loud and has fallen behind in reading. He had frequent ear infections as a toddler. At the school screening on 3 March he failed the whispered voice test on both sides. Otoscopy showed dull, retracted eardrums bilaterally without discharge. He was treated with a course of nasal saline and reviewed after four weeks, with no change in his hearing.
I would be grateful for a formal hearing assessment and ENT review, and for advice to the school on seating and classroom support in the meantime.

With thanks,
Nurse Miriam Castellanos-Obi, School Health Nurse)cmf"},
            {"assistant", R"cmf(- Referred: Kofi Arendt-Salazar, aged 7
- By: Nurse Miriam Castellanos-Obi, School Health Nurse, Pinecrest Primary School Health Service
- To: Audiology and ENT Clinic, Marlow Regional Hospital
- Main concern: possible hearing loss in both ears
- Supporting observations: often does not respond when spoken to from behind; turns the television up loud; has fallen behind in reading; frequent ear infections as a toddler; failed the whispered voice test on both sides on 3 March; dull, retracted eardrums on both sides without discharge
- Already tried: nasal saline, reviewed after four weeks with no change in hearing
- Requests: formal hearing assessment, ENT review, and advice to the school on seating and classroom support in the meantime)cmf"},
        },
        // 7. Heat illness first-aid log -> JSON
        {
            {"user", R"cmf(Extract from this incident log a JSON object with: casualty, age, setting, air_temperature, symptoms (list), first_measured_temperature, actions (list of objects with time and action) and outcome.

First-aid incident log, Greenvale building site, 19 July.
Casualty: Piotr Amankwah-Berg, 52, labourer. Air temperature 37 degrees C. Had been carrying bricks since 07:00 with one break.
11:20 Found by a colleague sitting in the shade, confused, unsteady, skin hot and dry. Not sure what day it was.
11:22 Site first-aider called the emergency number; operator advised urgent cooling. Ear thermometer reading 40.2 degrees C.
11:24 Moved to the shaded site office, outer clothes removed, soaked with cool water from a hose and fanned continuously. Cold packs placed in the armpits and groin.
11:35 Still confused; not given anything to drink because he was not fully alert. Cooling continued.
11:48 Ambulance arrived; crew continued cooling and took him to Harbourside General Hospital.
Outcome recorded later by the site manager: admitted for heat stroke, discharged two days later.)cmf"},
            {"assistant", R"cmf({
  "casualty": "Piotr Amankwah-Berg",
  "age": 52,
  "setting": "Greenvale building site, labourer carrying bricks since 07:00",
  "air_temperature": "37 degrees C",
  "symptoms": ["confusion", "unsteadiness", "hot, dry skin", "disorientation to day"],
  "first_measured_temperature": "40.2 degrees C (ear)",
  "actions": [
    {"time": "11:20", "action": "Found by a colleague in the shade, confused"},
    {"time": "11:22", "action": "Emergency number called; temperature measured"},
    {"time": "11:24", "action": "Moved to shade, outer clothes removed, soaked with cool water, fanned, cold packs to armpits and groin"},
    {"time": "11:35", "action": "Cooling continued; no fluids by mouth because not fully alert"},
    {"time": "11:48", "action": "Ambulance arrived, cooling continued, taken to Harbourside General Hospital"}
  ],
  "outcome": "Admitted for heat stroke, discharged two days later"
})cmf"},
        },
        // 8. Nursing handover -> SBAR
        {
            {"user", R"cmf(Reorganize this night handover into SBAR format (Situation, Background, Assessment, Recommendation), using only the facts given.

Bed 12, Mr. Rafael Quist-Adjei, 72, day 2 after a right hip replacement. Also has heart failure and takes furosemide. Overnight his urine output fell: 120 mL in the last 6 hours, catheter flushed and patent. BP 104/62, was 132/78 yesterday evening. Pulse 96, regular. Temperature 37.2 degrees C. Drinking little, says he feels nauseated. Morphine PCA used 6 times overnight. Wound dry. Creatinine this morning not back yet. The on-call doctor was informed at 05:30 and asked us to send a fresh creatinine and review the fluid chart at the morning round. Please chase the creatinine and make sure he is on the morning round list.)cmf"},
            {"assistant", R"cmf(Situation: Mr. Rafael Quist-Adjei, 72, bed 12, has had low urine output overnight: 120 mL in the last 6 hours through a flushed, patent catheter.

Background: Day 2 after a right hip replacement. Known heart failure, on furosemide. Using a morphine PCA (6 uses overnight).

Assessment: BP 104/62 (132/78 yesterday evening), pulse 96 and regular, temperature 37.2 degrees C. Drinking little and nauseated. Wound dry. This morning's creatinine is not back yet.

Recommendation: The on-call doctor was informed at 05:30 and asked for a fresh creatinine and a fluid chart review at the morning round. Please chase the creatinine result and make sure he is on the morning round list.)cmf"},
        },
        // 9. Explain a concept
        {
            {"user", R"cmf(Explain antibiotic resistance to a community health worker in plain language, in about 150 words, and finish with three things patients can do to help.)cmf"},
            {"assistant", R"cmf(Antibiotics are medicines that kill bacteria or stop them from growing. Bacteria multiply very fast, and sometimes a few of them change in a way that lets them survive an antibiotic. When antibiotics are used, the sensitive bacteria die but the resistant ones can survive, multiply and spread to other people. Over time, infections that were once easy to treat, such as some urinary or chest infections, stop responding to common antibiotics. Resistance grows faster when antibiotics are used when they are not needed, for example for colds and most sore throats caused by viruses, or when courses are taken at the wrong dose or shared with others.

Three things patients can do:
1. Take antibiotics only when a health worker prescribes them, exactly as directed.
2. Never share antibiotics or use leftovers from an old illness.
3. Prevent infections in the first place: wash hands, keep vaccinations up to date and use safe water.)cmf"},
        },
        // 10. Drip rate calculation, step by step
        {
            {"system", R"cmf(You help nurses with calculations. Work step by step and state the final answer clearly.)cmf"},
            {"user", R"cmf(We need to give 1000 mL of normal saline over 8 hours with a gravity giving set of 20 drops per mL. What is the rate in mL per hour and in drops per minute?)cmf"},
            {"assistant", R"cmf(Step 1 - mL per hour: 1000 mL / 8 h = 125 mL per hour.

Step 2 - mL per minute: 125 mL / 60 min = about 2.08 mL per minute.

Step 3 - drops per minute: 2.08 mL per minute x 20 drops per mL = about 41.7 drops per minute.

Answer: 125 mL per hour, which is about 42 drops per minute with a 20 drops/mL set. A quick check: (1000 x 20) / (8 x 60) = 20000 / 480 = 41.7. Count the drops for a full minute after setting the rate, recheck it regularly, and confirm the prescription before starting.)cmf"},
            {"user", R"cmf(What if the set is a paediatric one with 60 drops per mL?)cmf"},
            {"assistant", R"cmf(With 60 drops per mL, the number of drops per minute equals the number of mL per hour. So 125 mL per hour is 125 drops per minute: (1000 x 60) / (8 x 60) = 125. That is a fast rate to count by eye, so an infusion pump is preferable if one is available.)cmf"},
        },
        // 11. Short message
        {
            {"user", R"cmf(Write a short message to all clinic staff from Samuel Oduya-Hart, the nurse in charge, about a newborn resuscitation refresher training on Thursday 12 June from 14:00 to 16:00 in the maternity meeting room. It is for all midwives and nurses working in maternity. Staff on duty should arrange cover with their shift leader. Ask people to reply by Monday to confirm.)cmf"},
            {"assistant", R"cmf(Subject: Newborn resuscitation refresher - Thursday 12 June, 14:00-16:00

Dear colleagues,

There will be a newborn resuscitation refresher training on Thursday 12 June from 14:00 to 16:00 in the maternity meeting room. It is for all midwives and nurses working in maternity.

If you are on duty at that time, please arrange cover with your shift leader so that you can attend.

Please reply by Monday to confirm that you will be there.

Thank you,
Samuel Oduya-Hart
Nurse in Charge)cmf"},
        },
        // 12. Questions about a passage
        {
            {"user", R"cmf(Read the passage and answer the questions that follow.

Insulin is a protein and is damaged by heat, freezing and strong sunlight. Unopened insulin should be stored in a refrigerator at 2 to 8 degrees C, away from the freezer compartment; insulin that has been frozen must not be used, even after it thaws. Once a vial or pen is in use, most products can be kept at room temperature, up to about 25 to 30 degrees C depending on the product, for around four weeks; the package leaflet gives the exact limit. Where there is no refrigerator, families in hot climates often keep insulin in a clay pot with wet sand, or in a container wrapped in a damp cloth, which keeps it cooler than the surrounding air through evaporation. Insulin should never be left in a parked car, in direct sun or near a cooking fire. Before each injection, the insulin should be checked: clear insulins should look clear, and any insulin with clumps, frosting or unusual colour should be replaced.

Questions:
1. Where should unopened insulin be kept?
2. Can insulin that froze and then thawed still be used?
3. How long can an in-use pen usually be kept at room temperature?
4. Name one way to keep insulin cool without a refrigerator.)cmf"},
            {"assistant", R"cmf(1. In a refrigerator at 2 to 8 degrees C, away from the freezer compartment.
2. No. Insulin that has been frozen must not be used, even after it thaws.
3. For most products about four weeks, at up to about 25 to 30 degrees C depending on the product; the package leaflet gives the exact limit.
4. Keep it in a clay pot with wet sand, or in a container wrapped in a damp cloth, which cools it by evaporation.)cmf"},
        },
        // 13. Declining to diagnose, urging urgent care
        {
            {"user", R"cmf(My 3-year-old has had a fever since this morning and now has small dark red spots on her legs. When I press a glass on them they don't fade. She's very sleepy. Can you tell me what rash this is? We live an hour from the hospital so I'd rather wait until tomorrow.)cmf"},
            {"assistant", R"cmf(I can't tell you what this rash is, and nobody can safely do that without seeing her. But a fever with spots that do not fade under a glass, together with unusual sleepiness, can be a sign of a serious infection in the blood that gets worse within hours. Please do not wait until tomorrow.

- Take her to the nearest hospital or emergency service now, or call your local emergency number if you cannot travel quickly.
- If you can, phone ahead to say a young child has a fever and a rash that does not fade under a glass.
- On the way, keep her lightly dressed and watch her breathing and how responsive she is.
- If she becomes hard to wake, has a fit or has trouble breathing, call for emergency help immediately.

Going now is the right decision even if it turns out to be something mild.)cmf"},
        },
    };
    return v;
}

struct SmokePrompt {
    std::string_view name;
    std::string_view prompt;  // one user message
    int max_tokens;
};

// The degeneration smoke: short greedy generations from these prompts, checked for loops,
// repetition, garbage and broken structure (a quantized variant that fails here is rejected).
inline const std::vector<SmokePrompt>& smoke() {
    static const std::vector<SmokePrompt> v = {
        {"json_extraction", R"cmf(Clinic note: Rosa Delacroix-Ndu, 42, seen on 5 May 2025 at Hillcrest Clinic. Burning on passing urine and needing to pass urine often for 2 days; no fever, no back pain. Urine dipstick: nitrites positive, leukocytes 2+. Pregnancy test negative. Allergy: penicillin (rash). Prescribed nitrofurantoin 100 mg twice daily for 5 days. Return if not better in 48 hours or if fever develops.

Extract all of the following at once as a single JSON object: patient_name, age, visit_date, clinic, symptoms, urine_dipstick, allergies, medication, dose, duration, follow_up. Answer with JSON only.)cmf", 200},
        {"patient_question", R"cmf(What is high blood pressure and why does it matter? Answer in three sentences for a patient.)cmf", 128},
        {"first_aid_steps", R"cmf(How do I help someone who has a minor burn on their hand from a hot pan? Give at most five numbered steps.)cmf", 160},
        {"summary", R"cmf(Write a two-sentence summary of this paragraph.

The village health committee met on Tuesday to plan the coming rainy season. Last year, cases of diarrhoea doubled in the months of heavy rain, mostly among young children. The committee agreed to distribute water purification tablets to every household, to repair the two broken hand pumps before the end of the month, and to ask the health post to run a session for parents on preparing oral rehydration solution. The chairperson will report on progress at the next meeting in four weeks.)cmf", 120},
        {"list_then_stop", R"cmf(List the days of the week, one per line, then stop.)cmf", 96},
        {"plain_rewrite", R"cmf(Rewrite this so that someone without medical training can understand it, in one or two short sentences: "Administer the medication orally twice daily with food, and discontinue use and seek medical attention should a pruritic rash or dyspnoea develop.")cmf", 128},
    };
    return v;
}

// Asked with the test image through the vision tower.
inline constexpr std::string_view kImagePrompt = "Describe this image in one or two sentences.";

}  // namespace cmf::engine::texts
